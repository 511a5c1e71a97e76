"""Creates a blob container on a local Azurite server, signed with the
emulator's well-known development key (Shared Key authorization, as in
Azure Storage's REST documentation).

usage: azure_container.py PORT CONTAINER
"""
import base64
import hashlib
import hmac
import sys
import http.client
from email.utils import formatdate

ACCOUNT = "devstoreaccount1"
KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
       "K1SZFPTOtr/KBHBeksoGMGw==")
VERSION = "2021-08-06"

port, container = sys.argv[1], sys.argv[2]
date = formatdate(usegmt=True)
headers = f"x-ms-date:{date}\nx-ms-version:{VERSION}\n"
resource = f"/{ACCOUNT}/{ACCOUNT}/{container}\nrestype:container"
to_sign = "PUT\n" + "\n" * 11 + headers + resource
signature = base64.b64encode(
    hmac.new(base64.b64decode(KEY), to_sign.encode(), hashlib.sha256).digest()
).decode()
# http.client sends only these headers (urllib would add a Content-Type
# that the signature would then have to cover).
connection = http.client.HTTPConnection("127.0.0.1", int(port))
connection.request(
    "PUT",
    f"/{ACCOUNT}/{container}?restype=container",
    body=b"",
    headers={
        "x-ms-date": date,
        "x-ms-version": VERSION,
        "Authorization": f"SharedKey {ACCOUNT}:{signature}",
    },
)
status = connection.getresponse().status
if status != 201:
    sys.exit(f"creating container {container} failed with HTTP {status}")
