# shellcheck shell=bash
# PKI for the local control plane, generated with openssl into e2e/.run/pki.
# Generated once per `up` from scratch (i.e. after `down`); kept while running.
# ECDSA P-256 keys (fast to generate); the service-account signing key is RSA
# 2048 (RS256, what most clusters use).

_sign() { # name subject san-list [ca-prefix] [usage]
  local name="$1" subj="$2" san="$3" ca="${4:-ca}" usage="${5:-serverAuth,clientAuth}"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [[ -n "$san" ]] && echo "subjectAltName=$san"
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

_ca() { # name cn
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 -sha256 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -keyout "$PKI/$1.key" -out "$PKI/$1.crt" 2>/dev/null
}

gen_certs() {
  [[ -f "$PKI/.complete" ]] && return 0
  need_cmd openssl
  rm -rf "$PKI"; mkdir -p "$PKI"; chmod 700 "$PKI"
  log "generating PKI in ${PKI#"$E2E_DIR"/}"
  _ca ca kubedrs-e2e-ca
  _ca front-proxy-ca kubedrs-e2e-front-proxy-ca
  _sign apiserver "/CN=kube-apiserver" \
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.0.0.1" \
    ca serverAuth
  _sign etcd "/CN=etcd" "DNS:localhost,IP:127.0.0.1" ca serverAuth,clientAuth
  _sign apiserver-etcd-client "/CN=kube-apiserver-etcd-client" "" ca clientAuth
  _sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "" ca clientAuth
  _sign admin "/O=system:masters/CN=kubernetes-admin" "" ca clientAuth
  _sign kube-controller-manager "/CN=system:kube-controller-manager" "DNS:localhost,IP:127.0.0.1"
  _sign kube-scheduler "/CN=system:kube-scheduler" "DNS:localhost,IP:127.0.0.1"
  # kwok plays every kubelet: one serving cert for 127.0.0.1 (metrics-server
  # verifies it against ca.crt), also used as its client identity (admin group).
  _sign kwok "/O=system:masters/CN=kwok-controller" "DNS:localhost,IP:127.0.0.1"
  _sign metrics-server "/O=system:masters/CN=metrics-server" \
    "DNS:metrics-server.kube-system.svc,DNS:metrics-server.kube-system.svc.cluster.local,DNS:localhost,IP:127.0.0.1"
  _sign front-proxy-client "/CN=front-proxy-client" "" front-proxy-ca clientAuth
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  touch "$PKI/.complete"
}

# write_kubeconfig FILE USER-CERT-NAME
write_kubeconfig() {
  local file="$1" name="$2"
  cat >"$file" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: kubedrs-e2e
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$name.crt")
    client-key-data: $(base64 -w0 <"$PKI/$name.key")
contexts:
- name: kubedrs-e2e
  context:
    cluster: kubedrs-e2e
    user: $name
current-context: kubedrs-e2e
KCFG
  chmod 600 "$file"
}
