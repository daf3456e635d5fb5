#!/bin/sh
# Writes healthd's bash and zsh completions and its man page, generated from the argument
# parser (healthd.cli.build_parser), so they never fall behind the command line.
#
#   sh deploy/shell/generate.sh [PREFIX]      # PREFIX defaults to /usr/local/share
#
# Needs healthd, shtab and argparse-manpage importable by $PYTHON (default python3), e.g.
# `pip install shtab argparse-manpage` into healthd's venv and PYTHON=/opt/healthd/bin/python.
# Writes PREFIX/bash-completion/completions/healthd, PREFIX/zsh/vendor-completions/_healthd
# and PREFIX/man/man1/healthd.1.
set -eu
prefix=${1:-/usr/local/share}
python=${PYTHON:-python3}
version=$("$python" -c 'import healthd; print(healthd.__version__)')
mkdir -p "$prefix/bash-completion/completions" "$prefix/zsh/vendor-completions" "$prefix/man/man1"
"$python" -m shtab --shell=bash --error-unimportable healthd.cli.build_parser \
    > "$prefix/bash-completion/completions/healthd"
"$python" -m shtab --shell=zsh --error-unimportable healthd.cli.build_parser \
    > "$prefix/zsh/vendor-completions/_healthd"
"$python" -c 'import sys; from argparse_manpage.cli import main; sys.argv[0] = "argparse-manpage"; main()' \
    --module healthd.cli --function build_parser --prog healthd --project-name healthd \
    --version "$version" --manual-title "healthd manual" \
    --description "health-check daemon with a REST API and Prometheus metrics" \
    --url "https://github.com/healthd/healthd" --output "$prefix/man/man1/healthd.1"
