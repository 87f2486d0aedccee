#!/usr/bin/env bash
# Install what the offline test sets need from Debian, and fetch the Fish Fillets data.
#
#   bash data/install_system_deps.sh
#
# Idempotent: installs only what is missing, downloads only what is absent.
# * festival + festvox-italp16k (Italian TTS voice for it-tts) + festvox-kallpc16k
#   (English festival voice, a fallback) are installed with apt-get when run as root;
#   otherwise the script prints the command to run.
# * fillets-ng-data, fillets-ng-data-cs, fillets-ng-data-nl (Fish Fillets NG game data
#   with the Czech and Dutch voices) are fetched with `apt-get download` (no root
#   needed) into <sources>/debs and unpacked with `dpkg-deb -x` into <sources>/fillets-ng.
#   <sources> is crossattn_saliency.config.sources_dir() (data/sources by default;
#   CROSSATTN_SALIENCY_CACHE moves it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then py="$repo/.venv/bin/python"; else py="python3"; fi
fi
sources="$("$py" -c 'from crossattn_saliency.config import sources_dir; print(sources_dir())' 2>/dev/null \
           || echo "${CROSSATTN_SALIENCY_CACHE:-$repo/data}/sources")"

apt_packages=(festival festvox-italp16k festvox-kallpc16k)
fillets_packages=(fillets-ng-data fillets-ng-data-cs fillets-ng-data-nl)

# ---- TTS tools (root) ------------------------------------------------------------
missing=()
for p in "${apt_packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if (( ${#missing[@]} )); then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "MISSING Debian packages for the TTS test sets: ${missing[*]}" >&2
    echo "  run as root:  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    echo "  (it-tts needs festival + festvox-italp16k; the other sets build without them)" >&2
  fi
else
  echo "ok: ${apt_packages[*]} installed"
fi

# ---- Fish Fillets data (no root) ---------------------------------------------------
debs="$sources/debs"
unpacked="$sources/fillets-ng"
mkdir -p "$debs"
for p in "${fillets_packages[@]}"; do
  if ! compgen -G "$debs/${p}_*.deb" >/dev/null; then
    echo "downloading $p ..."
    if ! (cd "$debs" && apt-get download "$p"); then
      echo "could not 'apt-get download $p'; as root run 'apt-get update' first, then rerun this script" >&2
      exit 1
    fi
  fi
done
for deb in "$debs"/*.deb; do
  name="$(basename "$deb")"
  if [[ ! -f "$unpacked/.unpacked-$name" ]]; then
    echo "unpacking $name ..."
    mkdir -p "$unpacked"
    dpkg-deb -x "$deb" "$unpacked"
    touch "$unpacked/.unpacked-$name"
  fi
done
echo "ok: Fish Fillets data in $unpacked"
