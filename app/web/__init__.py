"""The browser page at `/`: plain HTML, CSS and JavaScript modules served from this package."""
