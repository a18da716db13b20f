"""TFLiteConverter wrappers: one place that decides how a model becomes float or int8."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf


def to_tflite(
    fn: tf.types.experimental.ConcreteFunction,
    *,
    calibration: Callable[[], Iterable[np.ndarray]] | None = None,
    float_outputs: bool = False,
    float_ops: Sequence[str] = (),
) -> bytes:
    """Convert a concrete function; with `calibration`, to full-integer int8.

    `float_outputs` keeps the outputs float (a DEQUANTIZE after the last int8 op), and
    `float_ops` names ops (by their output tensor names in the TF graph) that stay float
    altogether. Both exist for the detector, whose score and box heads lose too much in int8.
    """
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], fn)
    if calibration is None:
        return conv.convert()

    def representative() -> Iterable[list[np.ndarray]]:
        for x in calibration():
            yield [x.astype(np.float32)]

    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.float32 if float_outputs else tf.int8
    if float_ops:
        # Selective quantisation: the named ops run in float, the rest in int8.
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS,
        ]
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=conv,
            debug_dataset=representative,
            debug_options=tf.lite.experimental.QuantizationDebugOptions(
                denylisted_nodes=list(float_ops)
            ),
        )
        # The debugger's own get_nondebug_quantized_model() always gives a float input
        # (a QUANTIZE op inside the graph); quantise its calibrated model here instead,
        # so the model keeps the int8 input the device feeds through its pixel table.
        from tensorflow.lite.python.convert import mlir_quantize

        return mlir_quantize(
            debugger.calibrated_model,
            input_data_type=conv.inference_input_type,
            output_data_type=conv.inference_output_type,
            denylisted_nodes=list(float_ops),
        )
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return conv.convert()
