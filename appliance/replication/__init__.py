"""Several doors, one set of people: the gallery and the access rules replicated through
the MQTT broker (README "Several doors").

- `hlc`: the hybrid logical clock that versions every change.
- `records`: the record format, the conflict rule (`newer`) and the content hash.
- `crypto`: AES-GCM with the site key; the topic and the site are authenticated data.
- `store`: versions and tombstones beside the gallery, and applying records to it.
- `sync`: the component that publishes local changes, applies remote ones through the
  command service, and exchanges digests so copies converge.
"""
