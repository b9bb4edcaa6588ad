# Sourced by bin/start and bin/manage: the environment of the embedded installation, in one place.
# Sets IMAPCOPIER_DATA_DIR (default ./data), makes the installation's secrets once (data/secrets.env,
# mode 600) and exports them unless the environment already sets them. Run from the repository root.
export IMAPCOPIER_DATA_DIR="${IMAPCOPIER_DATA_DIR:-$PWD/data}"
mkdir -p "$IMAPCOPIER_DATA_DIR" && chmod 700 "$IMAPCOPIER_DATA_DIR"
secrets_file="$IMAPCOPIER_DATA_DIR/secrets.env"
if [ ! -f "$secrets_file" ]; then
  (umask 077; .venv/bin/python - > "$secrets_file" <<'PY'
import secrets
from cryptography.fernet import Fernet
print(f"IMAPCOPIER_FERNET_KEYS={Fernet.generate_key().decode()}")
print(f"SECRET_KEY={secrets.token_urlsafe(50)}")
PY
  )
fi
while IFS= read -r line; do
  name="${line%%=*}"
  # An `if`, not `a && b && export`: a false test must not become the sourced file's status, which
  # `set -e` in bin/start would take for a failure when the environment already sets the secrets.
  if [ -n "$name" ] && [ -z "${!name:-}" ]; then export "$name=${line#*=}"; fi
done < "$secrets_file"
