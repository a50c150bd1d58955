// A /classify result: the ranked labels as bars, and the calibrated decision when there is one.

import { html, percent } from "./dom.js";

const DECISION_TEXT = {
  match: "a known class, at or above the accept probability",
  unknown: "none of the model's classes",
  uncertain: "neither a confident match nor unknown",
};

/** The view of one image's classification (the result has no `error`). */
export async function classificationView(result, response, photoUrl) {
  const alt = result.filename ?? `photo ${result.index + 1}`;
  const heat = result.heat_map ? await heatLayer(result.heat_map) : null;
  return html(
    "div",
    { class: "classification" },
    html("figure", { class: "stage thumbnail" }, html("img", { src: photoUrl, alt }), heat),
    result.decision ? decisionView(result, response.decision_rule) : null,
    html(
      "ol",
      { class: "ranking", "aria-label": "Labels, best first" },
      result.predictions.map(predictionRow),
    ),
  );
}

/** The heat map (grey PNG, 255 = strongest evidence) as a warm, see-through layer. */
async function heatLayer(heatMap) {
  const bytes = Uint8Array.from(atob(heatMap.data), (char) => char.charCodeAt(0));
  const decoding = { colorSpaceConversion: "none", premultiplyAlpha: "none" };
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }), decoding);
  const canvas = html("canvas", {
    class: "heat",
    width: bitmap.width,
    height: bitmap.height,
    role: "img",
    "aria-label": "Heat map: where the model saw its top label",
  });
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  const image = context.getImageData(0, 0, bitmap.width, bitmap.height);
  const pixels = image.data;
  for (let at = 0; at < pixels.length; at += 4) {
    const evidence = pixels[at];
    // Dark red for weak evidence to yellow for the strongest; none stays clear.
    pixels[at] = 255;
    pixels[at + 1] = evidence;
    pixels[at + 2] = 0;
    pixels[at + 3] = Math.round(evidence * 0.8);
  }
  context.putImageData(image, 0, 0);
  return canvas;
}

function predictionRow(prediction) {
  const fill = html("span", { class: "fill" });
  fill.style.width = percent(prediction.score);
  return html(
    "li",
    { "data-class-id": prediction.class_id },
    html("span", { class: "label" }, prediction.label),
    html("span", { class: "bar", "aria-hidden": "true" }, fill),
    html("span", { class: "score" }, percent(prediction.score)),
  );
}

function decisionView(result, rule) {
  const facts = [`unknown score ${result.unknown_score.toFixed(3)}`];
  if (rule) {
    facts.push(`unknown above ${rule.unknown_threshold.toFixed(3)} (${rule.open_set_method})`);
    facts.push(`match at ${percent(rule.accept_probability)} or more`);
  }
  return html(
    "p",
    { class: `decision decision-${result.decision}` },
    "Decision: ",
    html("strong", { title: DECISION_TEXT[result.decision] ?? "" }, result.decision),
    html("span", { class: "decision-facts" }, ` · ${facts.join(" · ")}`),
  );
}
