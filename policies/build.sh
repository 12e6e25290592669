#!/usr/bin/env bash
# Build the bundled policies as WebAssembly components (wasm32-wasip2) and put each one next to
# its policy.toml, under the name the manifest's `wasm` field gives. Extra arguments go to cargo.
set -euo pipefail
cd "$(dirname "$0")"

TARGET=wasm32-wasip2
if ! sysroot=$(rustc --print sysroot 2>/dev/null) || [ ! -d "$sysroot/lib/rustlib/$TARGET" ]; then
    echo "error: the Rust target $TARGET is not installed for $(rustc --version 2>/dev/null || echo 'rustc (not found)')" >&2
    echo "       install it with: rustup target add $TARGET" >&2
    exit 1
fi

export CARGO_TARGET_DIR="$PWD/target"
cargo build --release --target "$TARGET" "$@"

status=0
for manifest in */policy.toml; do
    dir=${manifest%/policy.toml}
    crate=$(sed -n 's/^name = "\(.*\)"$/\1/p' "$dir/Cargo.toml" | head -n 1)
    wasm=$(sed -n 's/^wasm = "\(.*\)"$/\1/p' "$manifest" | head -n 1)
    if [ -z "$crate" ] || [ -z "$wasm" ]; then
        echo "error: $dir: cannot read the crate name or the manifest's wasm field" >&2
        status=1
        continue
    fi
    built="$CARGO_TARGET_DIR/$TARGET/release/${crate//-/_}.wasm"
    if [ ! -f "$built" ]; then
        echo "error: $dir: $built was not built" >&2
        status=1
        continue
    fi
    cp "$built" "$dir/$wasm"
    # A component starts with \0asm, version 0x0d, layer 1 (a core module has 01 00 00 00).
    magic=$(head -c 8 "$dir/$wasm" | od -An -tx1 | tr -d ' \n')
    if [ "$magic" != "0061736d0d000100" ]; then
        echo "error: $dir/$wasm is not a WebAssembly component (header $magic)" >&2
        status=1
        continue
    fi
    printf '%-16s %-22s %9d bytes\n' "$dir" "$wasm" "$(wc -c < "$dir/$wasm")"
done
exit "$status"
