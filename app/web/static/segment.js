// A /segment result: the PNG mask over the photo in the service's palette, and a legend with
// each class's pixels. The browser decodes the PNG; the palette (PLTE chunk) maps each decoded
// colour back to its class id, so classes can be shown or hidden one by one.

import { errorLine, html, percent } from "./dom.js";

const PNG_SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
const HEADINGS = ["Shown", "Class", "Pixels", "Share"];

/** The view of one image's mask; `setOpacity(value)` fades the whole mask layer. */
export async function segmentationView(result, photoUrl, backgroundId) {
  const bytes = Uint8Array.from(atob(result.mask.data), (char) => char.charCodeAt(0));
  const palette = pngPalette(bytes);
  const canvas = html("canvas", {
    class: "mask",
    width: result.width,
    height: result.height,
    role: "img",
    "aria-label": `Class mask of ${result.filename ?? "the photo"}`,
  });
  const stage = html(
    "figure",
    { class: "stage" },
    html("img", { src: photoUrl, alt: result.filename ?? `photo ${result.index + 1}` }),
    canvas,
  );
  if (palette === null) {
    const problem = errorLine("unreadable_mask", "The mask is not an indexed PNG with a palette.");
    const note = html("p", { class: "image-error" }, problem);
    const node = html("div", { class: "segmentation" }, stage, note);
    return { node, setOpacity() {} };
  }
  const classIds = await decodeClassIds(bytes, palette, result);
  const present = result.classes.map((item) => item.class_id);
  const visible = new Set(present.filter((id) => id !== backgroundId));
  const paint = () => paintMask(canvas, classIds, palette, visible);
  const legend = legendTable(result, palette, visible, paint);
  paint();
  return {
    node: html("div", { class: "segmentation" }, stage, legend),
    setOpacity(value) {
      canvas.style.opacity = String(value);
    },
  };
}

/** The PNG's palette as [r, g, b] triples, or null when it has none. */
function pngPalette(bytes) {
  if (!PNG_SIGNATURE.every((value, index) => bytes[index] === value)) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let offset = 8; offset + 8 <= bytes.length; ) {
    const length = view.getUint32(offset);
    const type = String.fromCharCode(...bytes.subarray(offset + 4, offset + 8));
    if (type === "PLTE") {
      const entries = bytes.subarray(offset + 8, offset + 8 + length);
      const colour = (id) => [...entries.subarray(id * 3, id * 3 + 3)];
      return Array.from({ length: length / 3 }, (_, id) => colour(id));
    }
    if (type === "IDAT" || type === "IEND") return null; // PLTE must come before the pixels
    offset += 12 + length;
  }
  return null;
}

/** The class id of every pixel: the decoded colours looked up in the palette. */
async function decodeClassIds(bytes, palette, result) {
  const blob = new Blob([bytes], { type: "image/png" });
  // No colour management: decoded pixels must be the palette's exact values.
  const decoding = { colorSpaceConversion: "none", premultiplyAlpha: "none" };
  const bitmap = await createImageBitmap(blob, decoding);
  const scratch = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = scratch.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  const pixels = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const byColour = new Map(result.classes.map(({ class_id: id }) => [colourKey(palette[id]), id]));
  const classIds = new Int16Array(bitmap.width * bitmap.height);
  for (let pixel = 0; pixel < classIds.length; pixel += 1) {
    const at = pixel * 4;
    const colour = (pixels[at] << 16) | (pixels[at + 1] << 8) | pixels[at + 2];
    classIds[pixel] = byColour.get(colour) ?? -1;
  }
  return classIds;
}

function colourKey([red, green, blue]) {
  return (red << 16) | (green << 8) | blue;
}

/** Draw the visible classes in their palette colours; the rest of the layer stays clear. */
function paintMask(canvas, classIds, palette, visible) {
  const context = canvas.getContext("2d");
  const image = context.createImageData(canvas.width, canvas.height);
  const out = image.data;
  for (let pixel = 0; pixel < classIds.length; pixel += 1) {
    const classId = classIds[pixel];
    if (!visible.has(classId)) continue;
    const [red, green, blue] = palette[classId];
    const at = pixel * 4;
    out[at] = red;
    out[at + 1] = green;
    out[at + 2] = blue;
    out[at + 3] = 255;
  }
  context.putImageData(image, 0, 0);
}

/** Classes present, most pixels first, each with a swatch, its pixels and a show/hide box. */
function legendTable(result, palette, visible, repaint) {
  const rows = result.classes.map((item) => {
    const toggle = html("input", {
      type: "checkbox",
      id: `show-${result.index}-${item.class_id}`,
      checked: visible.has(item.class_id),
    });
    toggle.addEventListener("change", () => {
      if (toggle.checked) visible.add(item.class_id);
      else visible.delete(item.class_id);
      repaint();
    });
    const swatch = html("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.background = `rgb(${palette[item.class_id].join(" ")})`;
    return html(
      "tr",
      { "data-class-id": item.class_id },
      html("td", {}, toggle),
      html("td", {}, html("label", { for: toggle.id }, swatch, item.label)),
      html("td", { class: "number" }, item.pixels.toLocaleString("en")),
      html("td", { class: "number" }, percent(item.fraction)),
    );
  });
  return html(
    "table",
    { class: "legend" },
    html("caption", {}, "Classes in the mask"),
    html(
      "thead",
      {},
      html("tr", {}, HEADINGS.map((title) => html("th", { scope: "col" }, title))),
    ),
    html("tbody", {}, rows),
  );
}
