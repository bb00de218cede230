#!/usr/bin/env bash
# A throw-away Orthanc archive with its DICOMweb plugin, for rtcode's DICOMweb tests
# (tests/test_dicomweb.py starts it this way) and for trying `rtcode scan
# dicomweb+http://...` by hand.
#
#   scripts/orthanc_test_server.sh [--upload FOLDER] [--dicom]
#
# - HTTP (REST API, DICOMweb) on a free port; Orthanc 1.10 listens on every
#   interface but answers only this computer ("RemoteAccessAllowed": false).
# - No DICOM port unless --dicom (then on a free port too: Orthanc cannot bind a
#   DICOM port to 127.0.0.1 alone, so it is off by default).
# - Configuration, database and storage live in a temporary folder that is
#   removed when the script stops (Ctrl-C, or SIGTERM to its process group).
# - --upload FOLDER sends every DICOM file under FOLDER through the REST API.
# - When ready it prints one line, `ready: dicomweb+http://127.0.0.1:PORT/dicom-web`,
#   then waits for Orthanc to end.
#
# Needs the Debian packages orthanc and orthanc-dicomweb
# (apt-get install -y orthanc orthanc-dicomweb) and python3.
set -euo pipefail

upload=""
dicom=false
while [ $# -gt 0 ]; do
    case "$1" in
    --upload) upload="$2"; shift 2 ;;
    --dicom) dicom=true; shift ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

PYTHON="${PYTHON:-python3}"
orthanc="$(command -v Orthanc || true)"
if [ -z "$orthanc" ] && [ -x /usr/sbin/Orthanc ]; then orthanc=/usr/sbin/Orthanc; fi
if [ -z "$orthanc" ]; then
    echo "Orthanc is not installed: apt-get install -y orthanc orthanc-dicomweb" >&2
    exit 3
fi
plugin=""
for candidate in /usr/share/orthanc/plugins/libOrthancDicomWeb.so /usr/lib/orthanc/libOrthancDicomWeb.so*; do
    if [ -e "$candidate" ]; then plugin="$candidate"; break; fi
done
if [ -z "$plugin" ]; then
    echo "the Orthanc DICOMweb plugin is not installed: apt-get install -y orthanc-dicomweb" >&2
    exit 3
fi

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

work="$(mktemp -d "${TMPDIR:-/tmp}/rtcode-orthanc.XXXXXX")"
orthanc_pid=""
cleanup() {
    if [ -n "$orthanc_pid" ]; then
        kill "$orthanc_pid" 2>/dev/null || true
        wait "$orthanc_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

http_port="$(free_port)"
dicom_port="$(free_port)"
cat >"$work/orthanc.json" <<EOF
{
  "Name": "rtcode-test",
  "StorageDirectory": "$work/storage",
  "IndexDirectory": "$work/storage",
  "HttpPort": $http_port,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "HttpDescribeErrors": true,
  "DicomServerEnabled": $dicom,
  "DicomPort": $dicom_port,
  "DicomAet": "ORTHANC",
  "Plugins": ["$plugin"],
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/", "EnableWado": false, "Host": "127.0.0.1"}
}
EOF

"$orthanc" "$work/orthanc.json" >"$work/orthanc.log" 2>&1 &
orthanc_pid=$!

base="http://127.0.0.1:$http_port"
"$PYTHON" - "$base" "$orthanc_pid" <<'EOF' || { tail -20 "$work/orthanc.log" >&2; exit 1; }
import os, sys, time, urllib.request
base, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 30
while True:
    try:
        with urllib.request.urlopen(base + "/system", timeout=2):
            break
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            sys.exit("Orthanc stopped while starting")
        if time.monotonic() > deadline:
            sys.exit("Orthanc did not answer within 30 s")
        time.sleep(0.1)
EOF

if [ -n "$upload" ]; then
    "$PYTHON" - "$base" "$upload" <<'EOF'
import pathlib, sys, urllib.request
base, folder = sys.argv[1], pathlib.Path(sys.argv[2])
sent = 0
for path in sorted(p for p in folder.rglob("*") if p.is_file()):
    data = path.read_bytes()
    if data[128:132] != b"DICM" and data[:2] not in (b"\x08\x00", b"\x02\x00"):
        continue  # not DICOM (a README, a CSV)
    request = urllib.request.Request(base + "/instances", data=data, method="POST")
    with urllib.request.urlopen(request, timeout=30):
        sent += 1
print(f"uploaded {sent} file(s) from {folder}", file=sys.stderr)
EOF
fi

echo "ready: dicomweb+$base/dicom-web"
if [ "$dicom" = true ]; then
    echo "DICOM: AE ORTHANC on port $dicom_port" >&2
fi
wait "$orthanc_pid"
