"""The Keras FaceNet h5 as a TF function with a free batch dimension.

The h5 has Lambda layers (the residual `scaling`), so it loads only with
safe_mode=False; it is a pinned file checked by sha256 before this runs.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

INPUT_SIZE = 160


def as_function(h5: Path, output_name: str) -> tf.types.experimental.ConcreteFunction:
    import keras

    model = keras.models.load_model(str(h5), safe_mode=False, compile=False)
    spec = tf.TensorSpec([None, INPUT_SIZE, INPUT_SIZE, 3], tf.float32, name="input")

    @tf.function(input_signature=[spec], autograph=False)
    def fn(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {output_name: model(x, training=False)}

    concrete = fn.get_concrete_function()
    concrete._keras_model = model  # the function only references the model's variables
    return concrete
