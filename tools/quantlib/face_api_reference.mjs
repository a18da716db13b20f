// face-api's own SsdMobilenetv1 forward pass (tfjs, CPU backend) on one raw image:
//   node face_api_reference.mjs PACKAGE_DIR INPUT.u8 SIZE OUT_PREFIX
// INPUT.u8 is SIZE x SIZE x 3 uint8 RGB; writes OUT_PREFIX.boxes.f32 (A x 4: ymin, xmin,
// ymax, xmax of every anchor, decoded by face-api) and OUT_PREFIX.scores.f32 (A). Used by
// tools/quantlib/ssd_mobilenet.py to check the rebuild against the original code.
import fs from 'fs';
import path from 'path';

const [pkg, input, sizeArg, out] = process.argv.slice(2);
const size = Number(sizeArg);
// The ESM bundle's Node platform shim lacks util.TextEncoder; its browser platform
// needs only a window and a document to exist (no canvas is used for a tensor input).
globalThis.window = globalThis;
globalThis.document = { createElement: () => ({ getContext: () => null }) };
const faceapi = await import(path.resolve(pkg, 'dist/face-api.esm.js'));
const tf = faceapi.tf;
await tf.setBackend('cpu');
await tf.ready();
const manifest = JSON.parse(fs.readFileSync(path.join(pkg, 'model/ssd_mobilenetv1_model-weights_manifest.json')));
const bin = fs.readFileSync(path.join(pkg, 'model', manifest[0].paths[0]));
const buffer = bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength);
faceapi.nets.ssdMobilenetv1.loadFromWeightMap(tf.io.decodeWeights(buffer, manifest[0].weights));
const pixels = Float32Array.from(new Uint8Array(fs.readFileSync(input)));
const netInput = await faceapi.toNetInput(tf.tensor4d(pixels, [1, size, size, 3]));
const { boxes, scores } = faceapi.nets.ssdMobilenetv1.forwardInput(netInput);
fs.writeFileSync(`${out}.boxes.f32`, Buffer.from((await boxes[0].data()).buffer));
fs.writeFileSync(`${out}.scores.f32`, Buffer.from((await scores[0].data()).buffer));
console.log(JSON.stringify({ backend: tf.getBackend(), tfjs: tf.version.tfjs, anchors: boxes[0].shape[0] }));
