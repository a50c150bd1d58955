// The page: wires the form to the API and shows each photo's answer.

import { apiKey, call, RequestFailed } from "./api.js";
import { classificationView } from "./classify.js";
import { detectionView } from "./detect.js";
import { errorLine, html } from "./dom.js";
import { describe, fillPicker, modelsByName, refusedNote } from "./models.js";
import { acceptDrops, PhotoSet } from "./photos.js";
import { segmentationView } from "./segment.js";

// Lowering the threshold asks the service again once the slider has rested this long.
const REQUERY_DELAY_MS = 350;

const byId = (id) => document.getElementById(id);
const ui = {
  form: byId("request"),
  model: byId("model"),
  modelAbout: byId("model-about"),
  photos: byId("photos"),
  run: byId("run"),
  topK: byId("top-k"),
  minProbability: byId("min-probability"),
  explain: byId("explain"),
  threshold: byId("score-threshold"),
  thresholdValue: byId("score-threshold-value"),
  maxDetections: byId("max-detections"),
  opacity: byId("opacity"),
  opacityValue: byId("opacity-value"),
  keyBox: byId("key-box"),
  key: byId("api-key"),
  forgetKey: byId("forget-key"),
  status: byId("status"),
  problem: byId("problem"),
  results: byId("results"),
};

const state = {
  models: new Map(),
  shown: null, // {model, files, response, views}: what the results area shows
  photoUrls: [],
  inflight: null,
  requeryTimer: 0,
};

const photos = new PhotoSet(byId("chosen"), (files) => {
  if (files.length === 0) ui.photos.value = "";
});

async function loadModels() {
  setStatus("Loading the models…");
  try {
    const listing = await call("/models");
    state.models = modelsByName(listing);
    fillPicker(ui.model, listing, ui.model.value);
    clearProblem();
    const refused = refusedNote(listing);
    setStatus(`${listing.models.length} models served on ${listing.device}. ${refused}`.trim());
    modelChanged();
  } catch (error) {
    ui.model.replaceChildren(html("option", { value: "" }, "Models unavailable"));
    ui.model.disabled = true;
    ui.modelAbout.textContent = "";
    setStatus("");
    showProblem(error);
  }
}

function modelChanged() {
  const model = state.models.get(ui.model.value);
  const task = model?.card.task;
  for (const fieldset of document.querySelectorAll("fieldset[data-task]")) {
    fieldset.hidden = fieldset.dataset.task !== task;
  }
  ui.modelAbout.textContent = model ? describe(model) : "";
  document.querySelector("[data-needs=calibration]").hidden = !model?.calibrated;
  document.querySelector("[data-needs=explain]").hidden = !explains(model);
  if (model?.card.detection) {
    ui.threshold.value = model.card.detection.score_threshold;
    ui.thresholdValue.value = Number(ui.threshold.value).toFixed(2);
  }
}

function explains(model) {
  return Boolean(model?.card.outputs?.includes("class_map"));
}

function requestParams(model) {
  const task = model.card.task;
  if (task === "classify") {
    const minimum = model.calibrated ? ui.minProbability.value : "";
    const explain = explains(model) && ui.explain.checked ? "true" : "";
    return { model: model.card.name, top_k: ui.topK.value, min_probability: minimum, explain };
  }
  if (task === "detect") {
    return {
      model: model.card.name,
      score_threshold: ui.threshold.value,
      max_detections: ui.maxDetections.value,
    };
  }
  return { model: model.card.name, format: "png" };
}

/** Send `files` to `model`; show the answers, or the request's error as the service words it. */
async function run(model, files, { keepOnError = false } = {}) {
  const body = new FormData();
  for (const file of files) body.append("image", file, file.name);
  state.inflight?.abort();
  const controller = new AbortController();
  state.inflight = controller;
  setBusy(true);
  setStatus(`Sending ${plural(files.length, "photo")} to ${model.card.name}…`);
  const started = performance.now();
  try {
    const params = requestParams(model);
    const response = await call(`/${model.card.task}`, { params, body, signal: controller.signal });
    clearProblem();
    await showResults(model, files, response);
    const elapsed = Math.round(performance.now() - started);
    setStatus(`${model.card.name} answered ${plural(files.length, "photo")} in ${elapsed} ms.`);
  } catch (error) {
    if (error.name === "AbortError") return;
    setStatus("");
    if (!keepOnError) clearResults();
    showProblem(error);
  } finally {
    if (state.inflight === controller) {
      state.inflight = null;
      setBusy(false);
    }
  }
}

async function showResults(model, files, response) {
  clearResults();
  state.photoUrls = files.map((file) => URL.createObjectURL(file));
  const views = [];
  const cards = [];
  for (const result of response.results) {
    const url = state.photoUrls[result.index];
    const view = result.error ? null : await resultView(model, response, result, url);
    if (view) views.push(view);
    cards.push(resultCard(result, view));
  }
  const answered = html(
    "p",
    { class: "answered" },
    `Answered by ${response.model.name} v${response.model.version} `,
    html("span", { class: "hint" }, `(sha256 ${response.model.sha256.slice(0, 12)})`),
  );
  ui.results.replaceChildren(answered, ...cards);
  state.shown = { model, files, response, views };
  // On a phone the answers sit under the form: bring them into view.
  if (ui.status.getBoundingClientRect().top > window.innerHeight) ui.status.scrollIntoView();
}

async function resultView(model, response, result, photoUrl) {
  const task = model.card.task;
  if (task === "classify") return { node: await classificationView(result, response, photoUrl) };
  if (task === "detect") return detectionView(result, photoUrl, Number(ui.threshold.value));
  const background = model.card.segmentation.background_class_id;
  const view = await segmentationView(result, photoUrl, background);
  view.setOpacity(ui.opacity.value);
  return view;
}

function resultCard(result, view) {
  const name = result.filename ?? `Photo ${result.index + 1}`;
  const facts = [];
  if (result.width) facts.push(`${result.width} × ${result.height} px`);
  if (result.image_sha256) facts.push(`sha256 ${result.image_sha256.slice(0, 12)}`);
  const content = result.error
    ? html("p", { class: "image-error" }, errorLine(result.error.code, result.error.message))
    : view.node;
  return html(
    "article",
    { class: "result", "data-index": result.index, "aria-label": name },
    html("h2", {}, name),
    facts.length ? html("p", { class: "meta" }, facts.join(" · ")) : null,
    content,
  );
}

function clearResults() {
  for (const url of state.photoUrls) URL.revokeObjectURL(url);
  state.photoUrls = [];
  state.shown = null;
  ui.results.replaceChildren();
}

function thresholdMoved() {
  const value = Number(ui.threshold.value);
  ui.thresholdValue.value = value.toFixed(2);
  const shown = state.shown;
  if (shown?.model.card.task !== "detect") return;
  window.clearTimeout(state.requeryTimer);
  if (value >= shown.response.score_threshold) {
    for (const view of shown.views) view.show(value);
    return;
  }
  // Boxes under the last request's threshold were never sent: ask again.
  const requery = () => run(shown.model, shown.files, { keepOnError: true });
  state.requeryTimer = window.setTimeout(requery, REQUERY_DELAY_MS);
}

function opacityMoved() {
  ui.opacityValue.value = `${Math.round(ui.opacity.value * 100)}%`;
  for (const view of state.shown?.views ?? []) view.setOpacity?.(ui.opacity.value);
}

function showProblem(error) {
  const failed = error instanceof RequestFailed ? error : pageError(error);
  const heading = failed.status ? html("strong", {}, `HTTP ${failed.status} `) : null;
  const parts = [html("p", {}, heading, errorLine(failed.code, failed.message))];
  if (failed.retryAfter) parts.push(html("p", {}, `Retry after ${failed.retryAfter} s.`));
  if (!failed.fromService) {
    parts.push(html("p", { class: "hint" }, "This answer is not in the service's error shape."));
  }
  if (Object.keys(failed.details).length > 0) {
    const details = JSON.stringify(failed.details, null, 2);
    parts.push(html("details", {}, html("summary", {}, "Details"), html("pre", {}, details)));
  }
  ui.problem.replaceChildren(...parts);
  ui.problem.hidden = false;
  if (failed.status === 401) {
    ui.keyBox.open = true;
    ui.key.focus();
  }
}

/** A failure of the page itself (a bug, a browser without a needed feature), named as such. */
function pageError(error) {
  const message = String(error?.message ?? error);
  return new RequestFailed({ status: 0, code: "page_error", message, fromService: false });
}

function clearProblem() {
  ui.problem.hidden = true;
  ui.problem.replaceChildren();
}

function setStatus(text) {
  ui.status.textContent = text;
}

function setBusy(busy) {
  ui.run.disabled = busy;
  ui.results.setAttribute("aria-busy", String(busy));
}

function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

function submitted(event) {
  event.preventDefault();
  const model = state.models.get(ui.model.value);
  if (!model) return setStatus("Choose a model first (the list loads from the service).");
  if (photos.files.length === 0) return setStatus("Choose at least one photo first.");
  window.clearTimeout(state.requeryTimer);
  run(model, [...photos.files]);
}

function keyChanged() {
  apiKey.set(ui.key.value.trim());
  loadModels();
}

ui.key.value = apiKey.get();
ui.form.addEventListener("submit", submitted);
ui.model.addEventListener("change", modelChanged);
ui.photos.addEventListener("change", () => photos.replace(ui.photos.files));
ui.threshold.addEventListener("input", thresholdMoved);
ui.opacity.addEventListener("input", opacityMoved);
ui.key.addEventListener("change", keyChanged);
ui.key.addEventListener("keydown", (event) => {
  if (event.key !== "Enter") return;
  event.preventDefault(); // Enter here saves the key; it does not send the photos
  keyChanged();
});
ui.forgetKey.addEventListener("click", () => {
  ui.key.value = "";
  keyChanged();
});
acceptDrops(byId("drop"), photos);
loadModels();
