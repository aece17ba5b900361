#!/usr/bin/env bash
# Re-vendor the console's front-end files from npm into the package's static directory.
# Run time needs none of this: the copied files are committed. Versions are pinned in
# package.json / package-lock.json at the repository root.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/src/a2agent/console/static/vendor"
cd "$root"
npm ci --no-audit --no-fund
mkdir -p "$dest"
cp node_modules/htmx.org/dist/htmx.min.js "$dest/htmx.min.js"
cp node_modules/uplot/dist/uPlot.iife.min.js "$dest/uplot.min.js"
cp node_modules/uplot/dist/uPlot.min.css "$dest/uplot.min.css"
cp node_modules/uplot/LICENSE "$dest/uplot.LICENSE"
cp node_modules/htmx.org/LICENSE "$dest/htmx.LICENSE"
# Inter (variable weight, Latin subset) so the console looks the same on every machine
cp node_modules/@fontsource-variable/inter/files/inter-latin-wght-normal.woff2 "$dest/inter-latin-wght-normal.woff2"
cp node_modules/@fontsource-variable/inter/LICENSE "$dest/inter.LICENSE"
node -e 'const l=require("./package-lock.json").packages;for(const p of ["htmx.org","uplot","@fontsource-variable/inter"])console.log(p, l["node_modules/"+p].version)' > "$dest/VERSIONS"
echo "vendored into $dest:"; ls -l "$dest"
