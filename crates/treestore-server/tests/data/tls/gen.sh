#!/bin/sh
# Regenerates the test-only TLS fixtures in this directory (see README.md).
# Needs the openssl command-line tool. Every certificate is valid for 100 years.
set -eu
cd "$(dirname "$0")"
DAYS=36500
ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }

# The test CA.
ec_key ca.key
openssl req -x509 -new -key ca.key -sha256 -days $DAYS -subj "/CN=TreeStore test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem

# The server: localhost and 127.0.0.1.
ec_key server.key
openssl req -new -key server.key -subj "/CN=localhost" -out server.csr
cat > server.ext <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
EXT
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 \
  -days $DAYS -extfile server.ext -out server.pem

# A client signed by the test CA.
ec_key client.key
openssl req -new -key client.key -subj "/CN=treestore test client" -out client.csr
cat > client.ext <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
EXT
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 \
  -days $DAYS -extfile client.ext -out client.pem

# A client signed by another CA (the server must refuse it).
ec_key other-ca.key
openssl req -x509 -new -key other-ca.key -sha256 -days $DAYS -subj "/CN=Untrusted test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out other-ca.pem
ec_key other-client.key
openssl req -new -key other-client.key -subj "/CN=untrusted test client" -out other-client.csr
openssl x509 -req -in other-client.csr -CA other-ca.pem -CAkey other-ca.key -CAcreateserial \
  -sha256 -days $DAYS -extfile client.ext -out other-client.pem

rm -f ./*.csr ./*.ext ./*.srl ca.key other-ca.key
