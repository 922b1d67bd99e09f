#!/usr/bin/env bash
# Vendors Vega, Vega-Lite and Vega-Embed for `dvc plots show` and builds .dvc/plots/offline.html,
# the HTML template `.dvc/config` names (plots.html_template): the three minified builds inlined,
# so the page draws its charts with no network (dvc-render's own page loads them from a CDN).
#
#   scripts/vendor_vega.sh           fetch the pinned packages with `npm pack` (needs npm and the
#                                    registry), copy build/*.min.js and LICENSE into .dvc/plots/vendor/,
#                                    then build the template
#   scripts/vendor_vega.sh --build   only rebuild the template from .dvc/plots/vendor/ (offline)
#
# To upgrade, change the versions below and run it without --build. They are the last releases of
# the lines dvc-render writes specs for (Vega-Lite v5; it links vega@5.20.2, vega-lite@5.2.0,
# vega-embed@6.18.2, releases that predate Vega's expression-sandbox security fixes).
# TEMPLATE=path overrides where the template is written (tests/test_plots_offline.py uses it).
set -euo pipefail

VEGA=5.33.1
VEGA_LITE=5.23.0
VEGA_EMBED=6.29.0
VEGA_UTIL=1.17.3  # the vega 5 packages ship no LICENSE: the monorepo's text comes from vega-util
                  # 1.17.3 (bundled in vega), the last vega-util release that has the file

root=$(cd "$(dirname "$0")/.." && pwd)
vendor=$root/.dvc/plots/vendor
template=${TEMPLATE:-$root/.dvc/plots/offline.html}
packages=(vega vega-lite vega-embed)
pinned="vega $VEGA
vega-lite $VEGA_LITE
vega-embed $VEGA_EMBED"

fetch() {
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && npm pack --silent "vega@$VEGA" "vega-lite@$VEGA_LITE" "vega-embed@$VEGA_EMBED" \
        "vega-util@$VEGA_UTIL" >/dev/null)  # npm checks each tarball against the registry's integrity
    rm -rf "$vendor"
    for pkg in "${packages[@]}" vega-util; do
        mkdir -p "$work/$pkg"
        tar xzf "$work/$pkg"-[0-9]*.tgz -C "$work/$pkg"
    done
    for pkg in "${packages[@]}"; do
        mkdir -p "$vendor/$pkg"
        cp "$work/$pkg/package/build/$pkg.min.js" "$vendor/$pkg/"
    done
    cp "$work/vega-lite/package/LICENSE" "$vendor/vega-lite/LICENSE"
    cp "$work/vega-embed/package/LICENSE" "$vendor/vega-embed/LICENSE"
    cp "$work/vega-util/package/LICENSE" "$vendor/vega/LICENSE"
    {
        echo "# package version: from npm with scripts/vendor_vega.sh; build/<package>.min.js and LICENSE"
        echo "# (vega's LICENSE is vega-util@$VEGA_UTIL's: the vega 5 packages ship none). All BSD-3-Clause."
        echo "$pinned"
    } >"$vendor/VERSIONS"
}

build() {
    if [ "$(grep -v '^#' "$vendor/VERSIONS")" != "$pinned" ]; then
        echo "error: $vendor holds other versions than this script pins; run it without --build" >&2
        exit 1
    fi
    for pkg in "${packages[@]}"; do
        # inlined verbatim: text that would end the <script> early, or that dvc-render fills in, must not occur
        if grep -q -i -e '</script' -e '<!--' -e '{plot_divs}' -e '{scripts}' -e '{refresh_tag}' \
            "$vendor/$pkg/$pkg.min.js"; then
            echo "error: $pkg.min.js cannot be inlined as it is" >&2
            exit 1
        fi
    done
    # dvc-render's page (dvc_render/html.py) without its {scripts} placeholder, which it would fill
    # with the CDN <script src> tags; it requires {plot_divs} and fills {refresh_tag} when asked to
    {
        printf '%s\n' '<!DOCTYPE html>' '<html>' '<head>' '    <meta charset="utf-8">' '    {refresh_tag}' \
            '    <title>DVC Plot</title>' \
            '    <!-- Built by scripts/vendor_vega.sh from .dvc/plots/vendor/ (licences there); do not edit. -->'
        while read -r pkg version; do
            printf '    <script>/* %s %s, BSD-3-Clause: .dvc/plots/vendor/%s/LICENSE */\n' "$pkg" "$version" "$pkg"
            sed '/^\/\/# sourceMappingURL=/d' "$vendor/$pkg/$pkg.min.js"  # the .map files are not vendored
            printf '\n    </script>\n'
        done <<<"$pinned"
        printf '%s\n' '    <style>' '        table {' '            border-spacing: 15px;' '        }' '    </style>' \
            '</head>' '<body>' '    {plot_divs}' '</body>' '</html>'
    } >"$template.tmp"
    mv "$template.tmp" "$template"
}

case "${1:-}" in
    "") fetch; build ;;
    --build) build ;;
    *) echo "usage: $0 [--build]" >&2; exit 2 ;;
esac
echo "$template: $(wc -c <"$template") bytes"
