"""The real int8 models on real photos: registry-shipped ones always, ../shared when present."""

import numpy as np
import pytest

from appliance.vision.imageio import read_image


def test_astronaut_one_face_in_the_right_place(pipeline, astronaut):
    faces = pipeline.faces(astronaut)
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].box
    # Eileen Collins' face in scikit-image's 512x512 astronaut.png.
    assert 160 < x1 < 200 and 55 < y1 < 95 and 260 < x2 < 300 and 160 < y2 < 200
    q = faces[0].quality
    assert q.score > 0.8 and q.eye_distance > 30 and q.frontal > 0.5
    assert faces[0].embedding.shape == (128,)
    assert np.isclose(np.linalg.norm(faces[0].embedding), 1.0, atol=1e-5)


def test_group_photo_finds_several_faces_and_they_differ(pipeline, group):
    faces = pipeline.faces(group)
    assert len(faces) >= 5
    embs = np.stack([f.embedding for f in faces])
    sims = embs @ embs.T
    off = sims[~np.eye(len(faces), dtype=bool)]
    assert off.max() < 0.6  # different people stay below the default threshold


def test_same_person_above_threshold_after_a_shift_and_scale(pipeline, astronaut):
    import cv2

    a = pipeline.faces(astronaut)[0].embedding
    moved = cv2.resize(astronaut[40:, 30:], None, fx=0.7, fy=0.7)
    b = pipeline.faces(moved)[0].embedding
    assert float(a @ b) > 0.8


def test_batch_embedding_equals_one_by_one(pipeline, group):
    faces = pipeline.faces(group)
    crops = np.stack([f.aligned for f in faces])
    batch = pipeline.embedder.embed(crops)
    single = np.concatenate([pipeline.embedder.embed(c[None]) for c in crops])
    assert np.allclose(batch, single, atol=1e-5)


def test_no_face_on_dogs(pipeline, shared):
    assert pipeline.faces(read_image(shared / "detection" / "dogs.jpg")) == []


TONY = ["Tony_Blair_0018.jpg", "Tony_Blair_0032.jpg"]
JEAN = "Jean_Chretien_0002.jpg"


def test_lfw_same_and_different_people(pipeline, shared):
    import cv2

    def emb(name):
        img = cv2.copyMakeBorder(
            read_image(shared / "lfw" / "images" / name), 50, 50, 50, 50, cv2.BORDER_CONSTANT
        )
        faces = pipeline.faces(img)
        assert len(faces) == 1
        return faces[0].embedding

    a1, a2 = emb(TONY[0]), emb(TONY[1])
    b = emb(JEAN)
    assert float(a1 @ a2) > 0.6
    assert float(a1 @ b) < 0.6


def test_scene_photos_find_the_people(pipeline, shared):
    faces = pipeline.faces(read_image(shared / "scenes" / "examples" / "two_people.jpg"))
    assert len(faces) == 2
    obama = pipeline.faces(read_image(shared / "scenes" / "examples" / "obama.jpg"))[0]
    obama2 = pipeline.faces(read_image(shared / "scenes" / "examples" / "obama2.jpg"))[0]
    biden = pipeline.faces(read_image(shared / "scenes" / "examples" / "biden.jpg"))[0]
    assert float(obama.embedding @ obama2.embedding) > 0.6
    assert float(obama.embedding @ biden.embedding) < 0.6


@pytest.mark.parametrize("name", ["mobilefacenet"])
def test_second_embedder_loads_and_embeds(name, astronaut):
    from appliance.vision.pipeline import FacePipeline

    pipe = FacePipeline.load(embedder=name)
    f = pipe.faces(astronaut)[0]
    assert f.embedding.shape == (192,)
    assert np.isclose(np.linalg.norm(f.embedding), 1.0, atol=1e-5)


def test_fused_cosine_is_the_mean_of_the_members_cosines(shared):
    """The fused embedder's whole point: one matrix product on 320-d vectors scores
    exactly the mean of FaceNet's and MobileFaceNet's cosines, so the matcher, gallery
    and thresholds need no change."""
    import cv2

    from appliance.vision.pipeline import FacePipeline, embedder_version

    fused = FacePipeline.load(embedder="fused")
    assert fused.embedder.spec.dim == 128 + 192
    assert fused.embedder.spec.version == embedder_version("fused")
    assert fused.embedder.spec.version.startswith("fused-")
    ex = shared / "scenes" / "examples"
    a = fused.faces(read_image(ex / "obama.jpg"))[0]
    b = fused.faces(read_image(ex / "obama2.jpg"))[0]
    c = fused.faces(read_image(ex / "biden.jpg"))[0]
    assert np.isclose(np.linalg.norm(a.embedding), 1.0, atol=1e-5)
    members = fused.embedder.members
    for x, y in ((a, b), (a, c)):
        cosines = []
        for m in members:
            size = m.spec.size
            u, v = (
                m.embed(cv2.resize(f.aligned, (size, size), interpolation=cv2.INTER_LINEAR)[None])[
                    0
                ]
                for f in (x, y)
            )
            cosines.append(float(u @ v))
        assert np.isclose(float(x.embedding @ y.embedding), np.mean(cosines), atol=1e-5)
    assert float(a.embedding @ b.embedding) > float(a.embedding @ c.embedding) + 0.3


def test_fused_members_side_by_side_give_the_same_vectors(group):
    """With two or more threads the fused embedder runs its members side by side, each on
    its share of the threads; the vectors are bit-identical to one after the other at one
    thread, for one face and for a batch."""
    import threading

    from appliance.vision.pipeline import FacePipeline

    one = FacePipeline.load(embedder="fused", threads=1)
    two = FacePipeline.load(embedder="fused", threads=2)
    assert not one.embedder.parallel and two.embedder.parallel
    assert all(m.model._it is not None for m in two.embedder.members)
    crops = np.stack([f.aligned for f in one.faces(group, embed=False)])
    assert len(crops) >= 2
    seen = []
    inner = two.embedder.members[1].embed

    def spy(c):
        seen.append(threading.current_thread().name)
        return inner(c)

    two.embedder.members[1].embed = spy
    for batch in (crops[:1], crops):
        assert np.array_equal(one.embedder.embed(batch), two.embedder.embed(batch))
    assert seen and all(n.startswith("embed-member") for n in seen), seen


@pytest.mark.parametrize("name", ["detector", "facenet", "mobilefacenet"])
def test_committed_model_runs_whole_in_xnnpack_as_its_manifest_says(name):
    """A graph XNNPACK cannot take whole (TFLite's int8 PRELU, a standalone RELU) is cut
    into partitions with reference kernels between them, several times slower; the
    manifest's count must be what the runtime reports, and one partition."""
    import json
    from pathlib import Path

    from appliance.vision.runtime import TfliteModel

    models = Path(__file__).resolve().parent.parent / "models"
    entry = json.loads((models / "manifest.json").read_text())["models"][name]
    model = TfliteModel(models / entry["file"])
    assert model.delegate_partitions() == (1, True)
    assert entry["agreement"]["xnnpack_partitions"] == 1
    assert "PRELU" not in [o["op_name"] for o in model._it._get_ops_details()]
