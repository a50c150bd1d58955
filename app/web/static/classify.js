// A /classify result: the ranked labels as bars, and the calibrated decision when there is one.

import { html, percent } from "./dom.js";

const DECISION_TEXT = {
  match: "a known class, at or above the accept probability",
  unknown: "none of the model's classes",
  uncertain: "neither a confident match nor unknown",
};

/** The view of one image's classification (the result has no `error`). */
export function classificationView(result, response, photoUrl) {
  const alt = result.filename ?? `photo ${result.index + 1}`;
  return html(
    "div",
    { class: "classification" },
    html("figure", { class: "stage thumbnail" }, html("img", { src: photoUrl, alt })),
    result.decision ? decisionView(result, response.decision_rule) : null,
    html(
      "ol",
      { class: "ranking", "aria-label": "Labels, best first" },
      result.predictions.map(predictionRow),
    ),
  );
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
