#!/bin/sh
# The README's gallery walk-through against a running service (make serve; or the compose stack):
# create a gallery, add two products from three photos each, match a new photo of one of them
# (decision "match") and a photo of something else ("unknown").
set -eu
URL=${URL:-http://127.0.0.1:8000}
PYTHON=${PYTHON:-.venv/bin/python}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
"$PYTHON" -m scripts.gallery_photos "$DIR"

curl -fsS -X PUT -H 'content-type: application/json' -d '{"model": "imagenet-mobilenet-v2"}' \
    "$URL/galleries/demo"
echo
for product in cat-chelsea espresso-cup; do
    curl -fsS -F "image=@$DIR/$product/1.jpg" -F "image=@$DIR/$product/2.jpg" \
        -F "image=@$DIR/$product/3.jpg" "$URL/galleries/demo/products/$product/references"
    echo
done
curl -fsS -F "image=@$DIR/new-cat.jpg" -F "image=@$DIR/rocket.jpg" "$URL/galleries/demo/match?top_k=2"
echo
