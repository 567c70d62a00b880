//go:build k8s

package k8s

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/vxvrf/cni/internal/netsim"
)

// Version is the Kubernetes release scripts/k8s-setup.sh builds.
const Version = "v1.35.4"

// The cluster is dual-stack: the Service ranges and the pod ranges
// (--cluster-cidr) of both families. The IPv4 pod range lies inside the
// ConfigMap's subnet 10.244.0.0/16; the IPv6 one is what an operator adds
// to the ConfigMap for IPv6 pods (testDualStack).
const (
	serviceCIDRs     = "10.96.0.0/16,fd00:10:96::/112"
	clusterCIDRs     = "10.244.0.0/16,fd00:10:244::/56"
	clusterCIDRv6    = "fd00:10:244::/56"
	clusterGatewayv6 = "fd00:10:244:ff::fffe"
)

// prefix is where scripts/e2e-setup.sh and scripts/k8s-setup.sh install.
func prefix() string {
	if p := os.Getenv("E2E_PREFIX"); p != "" {
		return p
	}
	return "/opt/vxvrf-e2e"
}

// k8sBin is the path of a Kubernetes component built by scripts/k8s-setup.sh.
func k8sBin(name string) string { return filepath.Join(prefix(), "k8s", Version, "bin", name) }

// need fails (VXVRF_K8S_REQUIRE=1, as make e2e-k8s sets) or skips unless
// every path is an executable file or a command on PATH.
func need(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	var missing []string
	for _, p := range tools {
		var err error
		if strings.HasSuffix(p, ".tar") {
			_, err = os.Stat(p) // an image archive
		} else {
			_, err = exec.LookPath(p)
		}
		if err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("not installed: %s (run scripts/e2e-setup.sh and scripts/k8s-setup.sh)", strings.Join(missing, ", "))
		if os.Getenv("VXVRF_K8S_REQUIRE") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// proc is a daemon started inside a namespace; Stop kills it.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// start runs bin with args inside netns ns (ip netns exec), logging to
// dir/name.log. The process is killed when the test ends.
func start(t *testing.T, in *netsim.NS, dir, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	return startArgv(t, dir, name, env, append([]string{"ip", "netns", "exec", in.Name, bin}, args...))
}

// startArgv runs argv (which enters the namespace itself), logging to
// dir/name.log; the process is killed when the test ends.
func startArgv(t *testing.T, dir, name string, env []string, argv []string) *proc {
	t.Helper()
	p := spawn(t, dir, name, env, argv)
	t.Cleanup(func() { p.Stop(syscall.SIGTERM) })
	return p
}

// spawn is startArgv without the cleanup: the caller stops the process.
func spawn(t *testing.T, dir, name string, env []string, argv []string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p
}

// Stop signals the process group and waits (SIGKILL after 10 s).
func (p *proc) Stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Exited reports whether the process has ended.
func (p *proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail is the end of the process's log, for failure messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// pki is a CA and what the control plane needs signed by it.
type pki struct {
	dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	CAFile string
}

func newPKI(t *testing.T, dir string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "vxvrf-test-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &pki{dir: dir, caCert: cert, caKey: key, CAFile: filepath.Join(dir, "ca.crt")}
	writePEM(t, p.CAFile, "CERTIFICATE", der)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeKey writes an EC private key and returns its path.
func writeKey(t *testing.T, path string, key *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "EC PRIVATE KEY", der)
	return path
}

// issue writes name.crt/name.key: a cert for the given IPs and DNS names
// (serving) or, with a CN and orgs, a client cert.
func (p *pki) issue(t *testing.T, name, cn string, orgs []string, ips []net.IP, dns []string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  ips,
		DNSNames:     dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(p.dir, name+".crt")
	writePEM(t, certFile, "CERTIFICATE", der)
	return certFile, writeKey(t, filepath.Join(p.dir, name+".key"), key)
}

// ControlPlane is etcd and kube-apiserver inside one namespace of the lab
// (the router), the API served on the underlay address UnderlayGateway.
type ControlPlane struct {
	Dir       string
	PKI       *pki
	URL       string
	AdminFile string // kubeconfig of the admin (system:masters)
	Admin     kubernetes.Interface
	AdminREST *rest.Config
	Etcd      *proc
	APIServer *proc
}

// startControlPlane starts etcd (Debian's etcd-server, client URL on the
// namespace's own loopback) and kube-apiserver (RBAC, service-account
// tokens) in ns, listening on addr, and waits until /readyz answers.
func startControlPlane(t *testing.T, in *netsim.NS, addr string) *ControlPlane {
	t.Helper()
	dir := t.TempDir()
	cp := &ControlPlane{Dir: dir, PKI: newPKI(t, dir), URL: "https://" + net.JoinHostPort(addr, "6443")}
	cp.Etcd = start(t, in, dir, "etcd", []string{"ETCD_UNSUPPORTED_ARCH="}, "etcd",
		"--name=vxvrf-test", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=vxvrf-test=http://127.0.0.1:2380", "--log-level=warn")
	serving, servingKey := cp.PKI.issue(t, "apiserver", "kube-apiserver", nil,
		[]net.IP{net.ParseIP(addr), net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
		[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"})
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	saKeyFile := writeKey(t, filepath.Join(dir, "sa.key"), saKey)
	pub, _ := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	saPubFile := filepath.Join(dir, "sa.pub")
	writePEM(t, saPubFile, "PUBLIC KEY", pub)
	adminCert, adminKey := cp.PKI.issue(t, "admin", "vxvrf-admin", []string{"system:masters"}, nil, nil)
	cp.APIServer = start(t, in, dir, "kube-apiserver", nil, k8sBin("kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address="+addr, "--advertise-address="+addr, "--secure-port=6443",
		"--tls-cert-file="+serving, "--tls-private-key-file="+servingKey,
		"--client-ca-file="+cp.PKI.CAFile,
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+saPubFile, "--service-account-signing-key-file="+saKeyFile,
		"--service-cluster-ip-range="+serviceCIDRs, "--allow-privileged=true",
		"--kubelet-client-certificate="+adminCert, "--kubelet-client-key="+adminKey,
		"--profiling=false", "--cert-dir="+filepath.Join(dir, "apiserver-certs"), "--v=1")
	cp.AdminFile = cp.kubeconfig(t, "admin", &clientcmdapi.AuthInfo{ClientCertificate: adminCert, ClientKey: adminKey})
	rc, err := clientcmd.BuildConfigFromFlags("", cp.AdminFile)
	if err != nil {
		t.Fatal(err)
	}
	cp.AdminREST = rc
	// The API listens inside the namespace; the test reaches it from there.
	rc.Dial = nsDialer(in)
	cp.Admin = kubernetes.NewForConfigOrDie(rc)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		res := cp.Admin.Discovery().RESTClient().Get().AbsPath("/readyz").Do(context.Background())
		var code int
		res.StatusCode(&code)
		if code == http.StatusOK {
			break
		}
		if cp.APIServer.Exited() || cp.Etcd.Exited() || time.Now().After(deadline) {
			t.Fatalf("API server not ready (code %d, %v)\netcd: %s\nkube-apiserver: %s", code, res.Error(), cp.Etcd.tail(), cp.APIServer.tail())
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("control plane %s ready (etcd + kube-apiserver %s)", cp.URL, Version)
	return cp
}

// kubeconfig writes a kubeconfig for the API server with the given
// credentials and returns its path.
func (cp *ControlPlane) kubeconfig(t *testing.T, name string, auth *clientcmdapi.AuthInfo) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: cp.URL, CertificateAuthority: cp.PKI.CAFile}
	cfg.AuthInfos[name] = auth
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: name}
	cfg.CurrentContext = "test"
	p := filepath.Join(cp.Dir, name+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// nsDialer dials from inside namespace n: the socket belongs to n's
// network stack for its whole life.
func nsDialer(n *netsim.NS) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		var c net.Conn
		err := n.Do(func(ns.NetNS) error {
			var err error
			c, err = (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, network, address)
			return err
		})
		return c, err
	}
}
