// sharp baseline for bench/postprocess_worker.py: same image, same derivatives, same encoder
// settings, timed in-process. Prints one JSON line: {"ms": [...], "bytes": {...}}.
import { readFileSync } from "node:fs";
import sharp from "sharp";

const [imagePath, specsText, runsText, mode] = process.argv.slice(2);
const specs = specsText.split(",").map((item) => {
  const [size, format] = item.split(":");
  return { size: Number(size), format };
});
const settings = JSON.parse(process.env.BENCH_ENCODER_SETTINGS);
sharp.cache(false); // like ours: no operation cache between runs

function encode(pipeline, format) {
  if (format === "webp") return pipeline.webp({ quality: settings.webp_quality, effort: settings.effort });
  if (format === "png")
    return pipeline.png({
      compressionLevel: settings.png_compression,
      adaptiveFiltering: settings.png_filter === "all",
    });
  if (format === "jpeg")
    return pipeline.flatten({ background: "#ffffff" }).jpeg({ quality: settings.jpeg_quality });
  if (format === "avif") return pipeline.avif({ quality: settings.avif_quality, effort: settings.effort });
  throw new Error(`unknown format ${format}`);
}

const fit = { fit: "inside", withoutEnlargement: true };

async function decodeOnce(png) {
  // Decode to raw pixels once, then every derivative from those pixels, concurrently.
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  const raw = { raw: { width: info.width, height: info.height, channels: info.channels } };
  return Promise.all(specs.map((s) => encode(sharp(data, raw).resize(s.size, s.size, fit), s.format).toBuffer()));
}

async function decodePerOutput(png) {
  // What Firebase's resize-images extension does: one pipeline (one decode) per output.
  return Promise.all(specs.map((s) => encode(sharp(png).resize(s.size, s.size, fit), s.format).toBuffer()));
}

const work = mode === "per-output" ? decodePerOutput : decodeOnce;
const png = readFileSync(imagePath);
const times = [];
let outputs = [];
for (let i = 0; i < Number(runsText) + 1; i++) {
  const start = process.hrtime.bigint();
  outputs = await work(png);
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (i > 0) times.push(ms); // the first run warms up
}
const bytes = Object.fromEntries(specs.map((s, i) => [`${s.size}:${s.format}`, outputs[i].length]));
console.log(JSON.stringify({ ms: times, bytes }));
