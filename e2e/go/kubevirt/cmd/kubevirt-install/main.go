// kubevirt-install prints what virt-operator would install for the pinned KubeVirt module, using
// KubeVirt's own generators (pkg/virt-operator/resource/generate/install and .../components): the
// CRDs, service accounts and RBAC, the virt-api webhook configurations and APIServices, the
// certificate secrets (filled as virt-operator fills them: a self-signed CA and certificates signed by
// it) and the CA bundle config map. It also writes the certificates as files for virt-api and
// virt-controller, which read them from mounted secrets in a real cluster.
//
// The only changes to KubeVirt's objects, both because the e2e cluster runs virt-api as a local
// process without a Pod network:
//   - the Service virt-api is of type ExternalName "localhost" (the API server dials an ExternalName
//     service's name directly when it calls a webhook or an aggregated API; with no kube-proxy a
//     ClusterIP would lead nowhere), and
//   - the webhooks and APIServices name the port virt-api listens on (--port) instead of 443.
//
// Usage: kubevirt-install --namespace kubevirt --virt-api-port 38443 --certs-dir DIR >install.yaml
//
//	kubevirt-install --deployments   (the Deployments virt-operator would create: args and env to copy)
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"kubevirt.io/kubevirt/pkg/certificates/triple/cert"
	"sigs.k8s.io/yaml"

	v1 "kubevirt.io/api/core/v1"

	"kubevirt.io/kubevirt/pkg/certificates/bootstrap"
	"kubevirt.io/kubevirt/pkg/virt-operator/resource/generate/components"
	"kubevirt.io/kubevirt/pkg/virt-operator/resource/generate/install"
	operatorutil "kubevirt.io/kubevirt/pkg/virt-operator/util"
)

func main() {
	namespace := flag.String("namespace", "kubevirt", "install namespace (virt-operator's and KubeVirt's)")
	apiPort := flag.Int("virt-api-port", 443, "port virt-api listens on (webhooks and APIServices call it there)")
	certsDir := flag.String("certs-dir", "", "write <secret>/tls.crt and tls.key for every certificate secret here")
	certDuration := flag.Duration("cert-duration", 7*24*time.Hour, "validity of the generated certificates")
	deployments := flag.Bool("deployments", false, "print the Deployments virt-operator would create instead")
	flag.Parse()

	kv := &v1.KubeVirt{ObjectMeta: metav1.ObjectMeta{Name: "kubevirt", Namespace: *namespace}}
	config := operatorutil.GetTargetConfigFromKV(kv)
	strategy, err := install.GenerateCurrentInstallStrategy(config, "", *namespace)
	check(err)

	if *deployments {
		for _, d := range strategy.Deployments() {
			emit(d)
		}
		return
	}

	emit(&corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: *namespace}})
	// The KubeVirt CRD comes with virt-operator's own manifest (kubevirt-operator.yaml), not the strategy.
	kvCrd, err := components.NewKubeVirtCrd()
	check(err)
	for _, crd := range append(strategy.CRDs(), kvCrd) {
		crd.TypeMeta = metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"}
		emit(crd)
	}
	for _, o := range strategy.ServiceAccounts() {
		emit(o)
	}
	for _, o := range strategy.ClusterRoles() {
		emit(o)
	}
	for _, o := range strategy.ClusterRoleBindings() {
		emit(o)
	}
	for _, o := range strategy.Roles() {
		emit(o)
	}
	for _, o := range strategy.RoleBindings() {
		emit(o)
	}
	for _, o := range strategy.Services() {
		if o.Name != components.VirtApiServiceName {
			continue // prometheus, virt-operator's webhook, export proxy: nothing serves them here
		}
		o.Spec = corev1.ServiceSpec{
			Type:         corev1.ServiceTypeExternalName,
			ExternalName: "localhost",
			Ports:        []corev1.ServicePort{{Name: "https", Protocol: corev1.ProtocolTCP, Port: int32(*apiPort)}},
		}
		emit(o)
	}

	// Certificates, as virt-operator makes them (apply/core.go: createOrUpdateCertificateSecret).
	duration := &metav1.Duration{Duration: *certDuration}
	var caCert *tls.Certificate
	for _, s := range strategy.CertificateSecrets() {
		if s.Name == components.KubeVirtCASecretName {
			check(components.PopulateSecretWithCertificate(s, nil, duration))
			c, err := components.LoadCertificates(s)
			check(err)
			caCert = c
		}
	}
	if caCert == nil {
		check(fmt.Errorf("no %s secret in the install strategy", components.KubeVirtCASecretName))
	}
	for _, s := range strategy.CertificateSecrets() {
		switch s.Name {
		case components.KubeVirtCASecretName:
		case components.KubeVirtExportCASecretName, components.KubeVirtBackupCASecretName:
			check(components.PopulateSecretWithCertificate(s, nil, duration))
		default:
			check(components.PopulateSecretWithCertificate(s, caCert, duration))
		}
		if *certsDir != "" {
			dir := filepath.Join(*certsDir, s.Name)
			check(os.MkdirAll(dir, 0o700))
			check(os.WriteFile(filepath.Join(dir, bootstrap.CertBytesValue), s.Data[bootstrap.CertBytesValue], 0o600))
			check(os.WriteFile(filepath.Join(dir, bootstrap.KeyBytesValue), s.Data[bootstrap.KeyBytesValue], 0o600))
		}
		emit(s)
	}
	caBundle := cert.EncodeCertPEM(caCert.Leaf)
	if *certsDir != "" {
		check(os.WriteFile(filepath.Join(*certsDir, "ca-bundle.crt"), caBundle, 0o600))
	}
	for _, cm := range strategy.ConfigMaps() {
		if cm.Name == components.KubeVirtCASecretName {
			cm.Data = map[string]string{components.CABundleKey: string(caBundle)}
			emit(cm)
			break // the strategy lists the CA config maps twice
		}
	}

	for _, w := range strategy.ValidatingWebhookConfigurations() {
		if w.Name == components.KubeVirtOperatorValidatingWebhookName {
			continue // served by virt-operator, which does not run here
		}
		for i := range w.Webhooks {
			w.Webhooks[i].ClientConfig.CABundle = caBundle
			if svc := w.Webhooks[i].ClientConfig.Service; svc != nil {
				svc.Port = ptr(int32(*apiPort))
			}
		}
		emit(w)
	}
	for _, w := range strategy.MutatingWebhookConfigurations() {
		if w.Name == components.VirtLauncherPodMutatingWebhookName {
			continue // virt-operator creates it only with the ContainerPathVolumes feature gate
		}
		for i := range w.Webhooks {
			w.Webhooks[i].ClientConfig.CABundle = caBundle
			if svc := w.Webhooks[i].ClientConfig.Service; svc != nil {
				svc.Port = ptr(int32(*apiPort))
			}
		}
		emit(w)
	}
	for _, a := range strategy.APIServices() {
		a.Spec.CABundle = caBundle
		if a.Spec.Service != nil {
			a.Spec.Service.Port = ptr(int32(*apiPort))
		}
		emit(a)
	}
}

func emit(o runtime.Object) {
	b, err := yaml.Marshal(o)
	check(err)
	fmt.Printf("---\n%s", b)
}

func ptr[T any](v T) *T { return &v }

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubevirt-install:", err)
		os.Exit(1)
	}
}
