// The photos to send: picked with the file input or dropped on the page, listed, removable.

import { html } from "./dom.js";

/** The chosen files, in the order they will be sent (the service answers in that order). */
export class PhotoSet {
  constructor(listElement, onChange) {
    this.files = [];
    this.list = listElement;
    this.onChange = onChange;
  }

  replace(files) {
    this.files = [...files];
    this.render();
  }

  add(files) {
    this.files.push(...files);
    this.render();
  }

  remove(index) {
    this.files.splice(index, 1);
    this.render();
  }

  render() {
    this.list.replaceChildren(
      ...this.files.map((file, index) => {
        const remove = html(
          "button",
          { type: "button", class: "link", "aria-label": `Remove ${file.name}` },
          "Remove",
        );
        remove.addEventListener("click", () => this.remove(index));
        const name = html("span", { class: "name" }, file.name);
        return html("li", {}, name, ` ${size(file.size)} `, remove);
      }),
    );
    this.onChange(this.files);
  }
}

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** Dropping files on `zone` adds them; a drop anywhere else never navigates away. */
export function acceptDrops(zone, photos) {
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    photos.add(event.dataTransfer.files);
  });
  for (const name of ["dragover", "drop"]) {
    window.addEventListener(name, (event) => event.preventDefault());
  }
}
