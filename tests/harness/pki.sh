#!/usr/bin/env bash
# Create the test PKI in DIR:
#   ca.pem / ca.key            test CA (CA:TRUE)
#   server.pem / server.key    server cert signed by the test CA,
#                              SAN DNS:localhost, IP:127.0.0.1, serverAuth
#   server-chain.pem           server.pem followed by ca.pem
#   wrong-ca.pem / wrong-ca.key  an unrelated CA, for negative tests
# All keys are EC P-256, all signatures ECDSA-SHA256.
set -euo pipefail

dir=${1:?usage: pki.sh DIR}
mkdir -p "$dir"
cd "$dir"
umask 077

make_ca() {
    local name=$1 cn=$2
    cat >"$name.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
O = tansync test
CN = $cn
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
CNF
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -sha256 -days 3650 -config "$name.cnf" \
        -keyout "$name.key" -out "$name.pem" 2>/dev/null
}

make_ca ca "tansync test CA"
make_ca wrong-ca "tansync unrelated CA"

cat >server.cnf <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
O = tansync test
CN = localhost
[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -config server.cnf -keyout server.key -out server.csr 2>/dev/null
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
    -sha256 -days 825 -extfile server.cnf -extensions v3_server \
    -out server.pem 2>/dev/null
cat server.pem ca.pem >server-chain.pem

openssl verify -CAfile ca.pem server.pem >/dev/null
chmod 600 ./*.key
chmod 644 ./*.pem
