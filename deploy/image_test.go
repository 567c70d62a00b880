// Package deploy_test builds the installer image with build-image.sh and
// checks that the result is a valid OCI image layout: every digest and size
// matches its blob, the layer's diff_id matches its uncompressed content, the
// layer holds the static binaries, and two builds are byte-identical.
package deploy_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vxvrf/cni/pkg/naming"
)

const image = "localhost/vxvrf-cni:test"

type descriptor struct {
	MediaType   string                             `json:"mediaType"`
	Digest      string                             `json:"digest"`
	Size        int64                              `json:"size"`
	Platform    *struct{ Architecture, OS string } `json:"platform,omitempty"`
	Annotations map[string]string                  `json:"annotations,omitempty"`
}

func build(t *testing.T, out string) {
	t.Helper()
	cmd := exec.Command("bash", "build-image.sh", "-o", out, "-i", image)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000", "VERSION=test")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build-image.sh: %v\n%s", err, b)
	}
}

// blob reads a blob and checks it against its descriptor.
func blob(t *testing.T, layout string, d descriptor, mediaType string) []byte {
	t.Helper()
	if d.MediaType != mediaType {
		t.Errorf("%s: media type %q, want %q", d.Digest, d.MediaType, mediaType)
	}
	hexDigest, ok := strings.CutPrefix(d.Digest, "sha256:")
	if !ok {
		t.Fatalf("digest %q is not sha256", d.Digest)
	}
	b, err := os.ReadFile(filepath.Join(layout, "blobs", "sha256", hexDigest))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != hexDigest {
		t.Errorf("blob %s has digest sha256:%x", d.Digest, sum)
	}
	if int64(len(b)) != d.Size {
		t.Errorf("blob %s: size %d, descriptor says %d", d.Digest, len(b), d.Size)
	}
	return b
}

func strictJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
}

func TestImageLayout(t *testing.T) {
	if testing.Short() {
		t.Skip("builds six binaries")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go on PATH")
	}
	dir := t.TempDir()
	out1, out2 := filepath.Join(dir, "1"), filepath.Join(dir, "2")
	build(t, out1)
	layout := filepath.Join(out1, "vxvrf-cni")

	var ol struct {
		ImageLayoutVersion string `json:"imageLayoutVersion"`
	}
	b, err := os.ReadFile(filepath.Join(layout, "oci-layout"))
	if err != nil {
		t.Fatal(err)
	}
	strictJSON(t, b, &ol)
	if ol.ImageLayoutVersion != "1.0.0" {
		t.Errorf("imageLayoutVersion %q", ol.ImageLayoutVersion)
	}

	var index struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Manifests     []descriptor `json:"manifests"`
	}
	b, _ = os.ReadFile(filepath.Join(layout, "index.json"))
	strictJSON(t, b, &index)
	if index.SchemaVersion != 2 || index.MediaType != "application/vnd.oci.image.index.v1+json" || len(index.Manifests) != 1 {
		t.Fatalf("index: %s", b)
	}
	md := index.Manifests[0]
	if md.Annotations["org.opencontainers.image.ref.name"] != image || md.Annotations["io.containerd.image.name"] != image {
		t.Errorf("index annotations %v, want the image name %s", md.Annotations, image)
	}
	if md.Platform == nil || md.Platform.OS != "linux" || md.Platform.Architecture != "amd64" {
		t.Errorf("platform %+v", md.Platform)
	}

	var manifest struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Config        descriptor   `json:"config"`
		Layers        []descriptor `json:"layers"`
	}
	strictJSON(t, blob(t, layout, md, "application/vnd.oci.image.manifest.v1+json"), &manifest)
	if manifest.SchemaVersion != 2 || len(manifest.Layers) != 1 {
		t.Fatalf("manifest %+v", manifest)
	}
	var config struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		Created      string `json:"created"`
		Config       struct {
			Env        []string
			Entrypoint []string
			Cmd        []string
			WorkingDir string
			Labels     map[string]string
		} `json:"config"`
		RootFS struct {
			Type    string   `json:"type"`
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
		History []struct {
			Created   string `json:"created"`
			CreatedBy string `json:"created_by"`
		} `json:"history"`
	}
	strictJSON(t, blob(t, layout, manifest.Config, "application/vnd.oci.image.config.v1+json"), &config)
	if config.OS != "linux" || config.Architecture != "amd64" || config.Created != "2023-11-14T22:13:20Z" {
		t.Errorf("config platform/created: %+v", config)
	}
	if config.RootFS.Type != "layers" || len(config.RootFS.DiffIDs) != 1 {
		t.Fatalf("rootfs %+v", config.RootFS)
	}

	gz := blob(t, layout, manifest.Layers[0], "application/vnd.oci.image.layer.v1.tar+gzip")
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(raw); fmt.Sprintf("sha256:%x", sum) != config.RootFS.DiffIDs[0] {
		t.Errorf("diff_id %s, uncompressed layer is sha256:%x", config.RootFS.DiffIDs[0], sum)
	}

	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Mode&0o777 != 0o755 || strings.HasPrefix(h.Name, "/") || strings.Contains(h.Name, "..") {
			t.Errorf("layer entry %s: uid %d gid %d mode %o", h.Name, h.Uid, h.Gid, h.Mode)
		}
		if h.Typeflag == tar.TypeReg {
			files[h.Name], _ = io.ReadAll(tr)
		}
	}
	want := []string{"opt/vxvrf/bin/vxvrf", "usr/local/bin/vxvrf-agent", "usr/local/bin/vxvrf-installer"}
	for _, s := range naming.Stages() {
		want = append(want, "opt/vxvrf/bin/"+s)
	}
	slices.Sort(want)
	var got []string
	for n := range files {
		got = append(got, n)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("layer files %v, want %v", got, want)
	}
	for n, data := range files {
		f, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			t.Errorf("%s: not ELF: %v", n, err)
			continue
		}
		if f.Machine != elf.EM_X86_64 || slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP }) {
			t.Errorf("%s: machine %v or dynamically linked: the image has no libc", n, f.Machine)
		}
	}
	if len(config.Config.Entrypoint) != 1 || files[strings.TrimPrefix(config.Config.Entrypoint[0], "/")] == nil {
		t.Errorf("entrypoint %v is not in the layer", config.Config.Entrypoint)
	}

	// Same sources, same SOURCE_DATE_EPOCH: the same image, digest for digest.
	build(t, out2)
	i1, _ := os.ReadFile(filepath.Join(out1, "vxvrf-cni", "index.json"))
	i2, _ := os.ReadFile(filepath.Join(out2, "vxvrf-cni", "index.json"))
	a1, _ := os.ReadFile(filepath.Join(out1, "vxvrf-cni.oci.tar"))
	a2, _ := os.ReadFile(filepath.Join(out2, "vxvrf-cni.oci.tar"))
	if !bytes.Equal(i1, i2) || !bytes.Equal(a1, a2) {
		t.Errorf("two builds differ:\n%s\n%s", i1, i2)
	}

	// An independent reader, when installed (Debian: skopeo), agrees.
	if _, err := exec.LookPath("skopeo"); err == nil {
		for _, src := range []string{"oci:" + layout + ":" + image, "oci-archive:" + filepath.Join(out1, "vxvrf-cni.oci.tar") + ":" + image} {
			cmd := exec.Command("skopeo", "copy", src, "dir:"+t.TempDir())
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("skopeo copy %s: %v\n%s", src, err, b)
			}
		}
	} else {
		t.Log("skopeo not installed: skipped the cross-check with skopeo copy")
	}
}
