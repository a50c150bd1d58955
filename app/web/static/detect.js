// A /detect result: boxes drawn over the photo (SVG in the photo's own pixels), and a list.

import { classColour, html, percent, svg } from "./dom.js";

/** The view of one image's detections; `show(threshold)` keeps only boxes scoring that or more. */
export function detectionView(result, photoUrl, threshold) {
  const { width, height } = result;
  const boxes = svg("svg", {
    class: "boxes",
    viewBox: `0 0 ${width} ${height}`,
    preserveAspectRatio: "none",
    role: "img",
  });
  const count = html("p", { class: "count" });
  const list = html("ol", { class: "detections", "aria-label": "Objects, best first" });
  const node = html(
    "div",
    { class: "detection" },
    html(
      "figure",
      { class: "stage" },
      html("img", { src: photoUrl, alt: result.filename ?? `photo ${result.index + 1}` }),
      boxes,
    ),
    count,
    list,
  );

  function show(minimum) {
    const kept = result.detections.filter((detection) => detection.score >= minimum);
    // Labels are sized to the photo, so they read the same on a phone and a wide screen.
    const fontSize = Math.max(width, height) * 0.028;
    boxes.replaceChildren(...kept.map((detection) => boxGroup(detection, fontSize)));
    boxes.setAttribute("aria-label", `${kept.length} boxes drawn on the photo`);
    const total = result.detections.length;
    count.textContent = `${kept.length} of ${total} objects at score ${minimum.toFixed(2)} or more`;
    list.replaceChildren(...kept.map(listRow));
  }

  show(threshold);
  return { node, show };
}

function boxGroup(detection, fontSize) {
  const { x_min: x, y_min: y, x_max: right, y_max: bottom } = detection.box;
  const colour = classColour(detection.class_id);
  const caption = `${detection.label} ${percent(detection.score)}`;
  const labelY = y > fontSize * 1.2 ? y - fontSize * 0.3 : y + fontSize;
  const box = svg("rect", {
    class: "box",
    x,
    y,
    width: right - x,
    height: bottom - y,
    "data-label": detection.label,
    "data-score": detection.score,
  });
  box.style.stroke = colour;
  const text = svg("text", { class: "box-label", x: x + fontSize * 0.2, y: labelY }, caption);
  text.style.fontSize = `${fontSize}px`;
  text.style.fill = colour;
  return svg("g", {}, svg("title", {}, caption), box, text);
}

function listRow(detection) {
  const { x_min, y_min, x_max, y_max } = detection.box;
  const where = [x_min, y_min, x_max, y_max].map((value) => Math.round(value)).join(", ");
  const swatch = html("span", { class: "swatch", "aria-hidden": "true" });
  swatch.style.background = classColour(detection.class_id);
  return html(
    "li",
    {},
    swatch,
    html("span", { class: "label" }, detection.label),
    html("span", { class: "score" }, percent(detection.score)),
    html("span", { class: "where", title: "x min, y min, x max, y max (pixels)" }, `[${where}]`),
  );
}
