// The model picker: GET /models grouped by task, each model named with its version.

import { html } from "./dom.js";

export const TASKS = [
  ["classify", "Classify"],
  ["detect", "Detect"],
  ["segment", "Segment"],
];

/** The served models by name, from a GET /models answer. */
export function modelsByName(listing) {
  return new Map(listing.models.map((model) => [model.card.name, model]));
}

/** Fill `select` with one group per task; keep `wanted` selected when it is still served. */
export function fillPicker(select, listing, wanted) {
  const groups = TASKS.map(([task, title]) => {
    const models = listing.models.filter((model) => model.card.task === task);
    if (models.length === 0) return null;
    return html("optgroup", { label: title }, models.map(option));
  });
  select.replaceChildren(...groups.filter(Boolean));
  const names = listing.models.map((model) => model.card.name);
  select.value = names.includes(wanted) ? wanted : listing.default_classifier;
  if (!select.value && names.length > 0) select.value = names[0];
  select.disabled = names.length === 0;
  if (names.length === 0) {
    select.replaceChildren(html("option", { value: "" }, "No model is served"));
  }
}

function option(model) {
  const { name, version } = model.card;
  const calibrated = model.calibrated ? " · calibrated" : "";
  return html("option", { value: name }, `${name} v${version}${calibrated}`);
}

/** One line about a model: task, architecture, labels, device, signature. */
export function describe(model) {
  const card = model.card;
  const parts = [
    card.task,
    card.architecture,
    `${card.labels.length} labels`,
    `on ${model.device}`,
    model.calibrated ? "calibrated decisions" : null,
    `signature ${model.signature.status}`,
    `sha256 ${model.sha256.slice(0, 12)}`,
  ];
  return parts.filter(Boolean).join(" · ");
}

/** What the picker leaves out: folders the service refused to serve, and why. */
export function refusedNote(listing) {
  if (listing.refused.length === 0) return "";
  const folders = listing.refused.map((item) => `${item.folder} (${item.reason})`);
  return `Not served: ${folders.join("; ")}.`;
}
