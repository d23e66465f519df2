// NSFWJS itself, as its users run it on Node (tfjs CPU backend): the reference for the PyTorch port.
//   node nsfwjs_reference.cjs classify MODEL IMAGES.json   -> JSON: five probabilities per image (NSFWJS's class order)
//   node nsfwjs_reference.cjs time MODEL N BATCH           -> JSON: images/s of batched model.predict on N inputs
// IMAGES.json: [{"shape": [h, w, 3], "data": base64 of the uint8 RGB pixels}, ...]. MODEL: MobileNetV2, MobileNetV2Mid,
// InceptionV3. Anything tfjs prints goes to stderr, so stdout holds only the answer.
console.log = console.info = console.warn = (...a) => process.stderr.write(a.join(" ") + "\n");
const fs = require("fs");
const tf = require("@tensorflow/tfjs");
const nsfwjs = require("nsfwjs");

async function classify(net, file) {
  const out = [];
  for (const image of JSON.parse(fs.readFileSync(file, "utf8"))) {
    const pixels = tf.tensor3d(new Int32Array(Buffer.from(image.data, "base64")), image.shape, "int32");
    const probs = net.infer(pixels); // NSFWJS's own path: / 255, resizeBilinear(alignCorners) unless already the size
    out.push(Array.from(await probs.data()));
    tf.dispose([pixels, probs]);
  }
  return out;
}

async function time(net, size, n, batch) {
  const inputs = tf.randomUniform([batch, size, size, 3]);
  tf.dispose(net.model.predict(inputs)); // warm-up
  const started = process.hrtime.bigint();
  for (let done = 0; done < n; done += batch) {
    const out = net.model.predict(inputs);
    await out.data();
    out.dispose();
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  inputs.dispose();
  return { images: Math.ceil(n / batch) * batch, seconds, images_per_second: (Math.ceil(n / batch) * batch) / seconds };
}

async function main() {
  const [mode, model, ...rest] = process.argv.slice(2);
  await tf.setBackend("cpu");
  const net = await nsfwjs.load(model);
  const size = model === "InceptionV3" ? 299 : 224;
  const answer = mode === "classify" ? await classify(net, rest[0]) : await time(net, size, Number(rest[0]), Number(rest[1]));
  process.stdout.write(JSON.stringify(answer));
}

main().catch((error) => { process.stderr.write(String(error && error.stack || error) + "\n"); process.exit(1); });
