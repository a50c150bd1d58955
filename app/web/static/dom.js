// Element builders. Text from the service (labels, file names, messages) is only ever set as
// text, never parsed as HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

/** An HTML element with attributes (`class`, `data-*`, ...) and children (nodes or strings). */
export function html(tag, attributes = {}, ...children) {
  return build(document.createElement(tag), attributes, children);
}

/** An SVG element, likewise. */
export function svg(tag, attributes = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attributes, children);
}

function build(element, attributes, children) {
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** A score in [0, 1] as a percentage with one decimal. */
export function percent(score) {
  return `${(score * 100).toFixed(1)}%`;
}

/** A colour per class id, far apart for neighbouring ids (golden-angle hue steps). */
export function classColour(classId) {
  return `hsl(${Math.round((classId * 137.508) % 360)} 85% 55%)`;
}

/** `[error code] message`: a per-image or request error in the service's words. */
export function errorLine(code, message) {
  const text = html("span", { class: "error-message" }, message);
  return [html("code", { class: "error-code" }, code), " ", text];
}
