package deploycheck

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// manifests are the Kubernetes files under deploy/kubernetes.
var manifests = []string{"deploy/kubernetes/sidecar.yaml", "deploy/kubernetes/sidecar-pvc.yaml"}

// decodeStrict decodes every document of a manifest into the Kubernetes API
// types with apimachinery's strict serializer: an unknown or duplicated
// field is an error, as `kubectl apply` (server-side field validation,
// Strict) would report it.
func decodeStrict(data []byte) ([]runtime.Object, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	ser := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
		kjson.SerializerOptions{Yaml: true, Strict: true})
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []runtime.Object
	for i := 1; ; i++ {
		doc, err := r.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if onlyComments(doc) {
			continue
		}
		obj, gvk, err := ser.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if gvk.Kind == "" || gvk.Version == "" {
			return nil, fmt.Errorf("document %d has no apiVersion or kind", i)
		}
		out = append(out, obj)
	}
}

func onlyComments(doc []byte) bool {
	for l := range strings.SplitSeq(string(doc), "\n") {
		if l = strings.TrimSpace(l); l != "" && l != "---" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// objects is every object of the manifests, by kind and name.
type objects struct {
	secrets      map[string]*corev1.Secret
	configMaps   map[string]*corev1.ConfigMap
	services     map[string]*corev1.Service
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
}

func loadManifests(t *testing.T) (objects, map[string][]runtime.Object) {
	t.Helper()
	o := objects{map[string]*corev1.Secret{}, map[string]*corev1.ConfigMap{}, map[string]*corev1.Service{},
		map[string]*appsv1.Deployment{}, map[string]*appsv1.StatefulSet{}}
	byFile := map[string][]runtime.Object{}
	for _, f := range manifests {
		objs, err := decodeStrict([]byte(readRepoFile(t, f)))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		byFile[f] = objs
		for _, obj := range objs {
			switch v := obj.(type) {
			case *corev1.Secret:
				o.secrets[v.Name] = v
			case *corev1.ConfigMap:
				o.configMaps[v.Name] = v
			case *corev1.Service:
				o.services[v.Name] = v
			case *appsv1.Deployment:
				o.deployments[v.Name] = v
			case *appsv1.StatefulSet:
				o.statefulSets[v.Name] = v
			default:
				t.Errorf("%s: unexpected %T", f, obj)
			}
		}
	}
	return o, byFile
}

func TestManifestsDecodeStrictly(t *testing.T) {
	_, byFile := loadManifests(t)
	kinds := func(f string) []string {
		var k []string
		for _, o := range byFile[f] {
			k = append(k, fmt.Sprintf("%T", o))
		}
		return k
	}
	if got, want := kinds(manifests[0]), []string{"*v1.Secret", "*v1.ConfigMap", "*v1.Deployment"}; !slices.Equal(got, want) {
		t.Errorf("%s holds %v, want %v", manifests[0], got, want)
	}
	if got, want := kinds(manifests[1]), []string{"*v1.Service", "*v1.StatefulSet"}; !slices.Equal(got, want) {
		t.Errorf("%s holds %v, want %v", manifests[1], got, want)
	}
}

// TestStrictDecodingCatchesTypos makes sure the decoding above would catch
// the mistakes it is there for.
func TestStrictDecodingCatchesTypos(t *testing.T) {
	src := readRepoFile(t, manifests[0])
	for name, edit := range map[string][2]string{
		"misspelt field":   {"readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true"},
		"field misplaced":  {"      terminationGracePeriodSeconds: 45", "      terminationGracePeriod: 45"},
		"duplicated field": {"          imagePullPolicy: IfNotPresent\n", "          imagePullPolicy: IfNotPresent\n          imagePullPolicy: Always\n"},
	} {
		if !strings.Contains(src, edit[0]) {
			t.Fatalf("%s: %q is not in %s any more; update this test", name, edit[0], manifests[0])
		}
		if _, err := decodeStrict([]byte(strings.Replace(src, edit[0], edit[1], 1))); err == nil {
			t.Errorf("%s: decoded without error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// podSpecs are the workloads of the manifests.
func podSpecs(o objects) map[string]*corev1.PodTemplateSpec {
	out := map[string]*corev1.PodTemplateSpec{}
	for n, d := range o.deployments {
		out["Deployment "+n] = &d.Spec.Template
	}
	for n, s := range o.statefulSets {
		out["StatefulSet "+n] = &s.Spec.Template
	}
	return out
}

// agentContainer is the Sluice container of a pod and whether it is a
// native sidecar (an init container with restartPolicy Always).
func agentContainer(t *testing.T, spec *corev1.PodSpec) (*corev1.Container, bool) {
	t.Helper()
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		if strings.Contains(c.Image, "sluice-agent") {
			native := c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
			return c, native
		}
	}
	for i := range spec.Containers {
		if c := &spec.Containers[i]; strings.Contains(c.Image, "sluice-agent") {
			return c, false
		}
	}
	t.Fatal("no container runs a sluice-agent image")
	return nil, false
}

// configFlag is the --config argument of the agent's command line.
func configFlag(args []string) string {
	for i, a := range args {
		switch {
		case (a == "--config" || a == "-c") && i+1 < len(args):
			return args[i+1]
		case strings.HasPrefix(a, "--config="):
			return strings.TrimPrefix(a, "--config=")
		}
	}
	return ""
}

// mountFor is the volume mount holding path in c, the deepest one.
func mountFor(c *corev1.Container, p string) *corev1.VolumeMount {
	var best *corev1.VolumeMount
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		if (p == m.MountPath || strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/")) &&
			(best == nil || len(m.MountPath) > len(best.MountPath)) {
			best = m
		}
	}
	return best
}

func volume(spec *corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

// configMapFiles is what a ConfigMap volume shows in the container: path
// relative to the mount -> content.
func configMapFiles(t *testing.T, o objects, v *corev1.Volume) map[string]string {
	t.Helper()
	cm := o.configMaps[v.ConfigMap.Name]
	if cm == nil {
		t.Fatalf("volume %s: no ConfigMap %q in the manifests", v.Name, v.ConfigMap.Name)
	}
	files := map[string]string{}
	if len(v.ConfigMap.Items) == 0 {
		maps.Copy(files, cm.Data)
		return files
	}
	for _, it := range v.ConfigMap.Items {
		data, ok := cm.Data[it.Key]
		if !ok {
			t.Errorf("volume %s: item key %q is not in ConfigMap %s", v.Name, it.Key, cm.Name)
		}
		files[it.Path] = data
	}
	return files
}

// agentFiles resolves an absolute path in the agent container to the
// ConfigMap files under it: a file, or every file of a directory.
func agentFiles(t *testing.T, o objects, spec *corev1.PodSpec, c *corev1.Container, p string) map[string]string {
	t.Helper()
	m := mountFor(c, p)
	if m == nil {
		t.Fatalf("%s is on no volume of container %s", p, c.Name)
	}
	v := volume(spec, m.Name)
	if v == nil || v.ConfigMap == nil {
		t.Fatalf("%s is on volume %s, which is not a ConfigMap", p, m.Name)
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(p, m.MountPath), "/")
	out := map[string]string{}
	for fp, data := range configMapFiles(t, o, v) {
		if fp == rel || rel == "" || strings.HasPrefix(fp, rel+"/") {
			out[path.Join(m.MountPath, fp)] = data
		}
	}
	return out
}

// ingestSettings finds the http_ingest input of a pipeline, wherever it
// sits (alone or under a broker).
func ingestSettings(t *testing.T, pipeline string) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(pipeline), &doc); err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	var find func(v any) map[string]any
	find = func(v any) map[string]any {
		switch v := v.(type) {
		case map[string]any:
			if hi, ok := v["http_ingest"].(map[string]any); ok {
				return hi
			}
			for _, c := range v {
				if hi := find(c); hi != nil {
					return hi
				}
			}
		case []any:
			for _, c := range v {
				if hi := find(c); hi != nil {
					return hi
				}
			}
		}
		return nil
	}
	hi := find(doc["input"])
	if hi == nil {
		t.Fatal("the pipeline has no http_ingest input")
	}
	return hi
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

// envVarRef matches a Benthos ${VAR} or ${VAR:default} reference.
var envVarRef = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$`)

// secretValue is what a secretKeyRef resolves to.
func secretValue(t *testing.T, o objects, ref *corev1.SecretKeySelector) string {
	t.Helper()
	s := o.secrets[ref.Name]
	if s == nil {
		t.Fatalf("secretKeyRef: no Secret %q in the manifests", ref.Name)
	}
	if v, ok := s.StringData[ref.Key]; ok {
		return v
	}
	if v, ok := s.Data[ref.Key]; ok {
		return string(v)
	}
	t.Fatalf("secretKeyRef: Secret %s has no key %q", ref.Name, ref.Key)
	return ""
}

// containerEnv is the environment the kubelet would give c.
func containerEnv(t *testing.T, o objects, c *corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = secretValue(t, o, e.ValueFrom.SecretKeyRef)
		case e.ValueFrom.ResourceFieldRef != nil:
			rf := e.ValueFrom.ResourceFieldRef
			if rf.Resource != "limits.memory" || (rf.ContainerName != "" && rf.ContainerName != c.Name) {
				t.Fatalf("env %s: resourceFieldRef %+v not handled by this test", e.Name, rf)
			}
			div := int64(1)
			if !rf.Divisor.IsZero() {
				div = rf.Divisor.Value()
			}
			env[e.Name] = strconv.FormatInt(c.Resources.Limits.Memory().Value()/div, 10)
		default:
			t.Fatalf("env %s: valueFrom %+v not handled by this test", e.Name, e.ValueFrom)
		}
	}
	return env
}

// agentSetup is what the checks learn about a pod's agent from the
// manifests.
type agentSetup struct {
	container   *corev1.Container
	native      bool
	configPath  string
	config      map[string]any
	pipelines   map[string]string // path in the container -> YAML
	ingest      map[string]any
	ingestURL   *url.URL
	httpPort    int
	ingestToken string
}

func inspect(t *testing.T, o objects, spec *corev1.PodSpec) agentSetup {
	t.Helper()
	var a agentSetup
	a.container, a.native = agentContainer(t, spec)
	a.configPath = configFlag(a.container.Args)
	if a.configPath == "" {
		t.Fatalf("container %s: no --config argument in %q", a.container.Name, a.container.Args)
	}
	cfgFiles := agentFiles(t, o, spec, a.container, a.configPath)
	cfgText, ok := cfgFiles[a.configPath]
	if !ok {
		t.Fatalf("--config %s: no such file in the mounted ConfigMap", a.configPath)
	}
	if err := yaml.Unmarshal([]byte(cfgText), &a.config); err != nil {
		t.Fatalf("agent config %s: %v", a.configPath, err)
	}
	a.pipelines = map[string]string{}
	pls, _ := a.config["pipelines"].([]any)
	if len(pls) == 0 {
		t.Fatalf("agent config %s names no pipelines", a.configPath)
	}
	for _, p := range pls {
		files := agentFiles(t, o, spec, a.container, p.(string))
		for fp, data := range files {
			if ext := path.Ext(fp); ext == ".yaml" || ext == ".yml" {
				a.pipelines[fp] = data
			}
		}
		if len(files) == 0 {
			t.Errorf("pipelines entry %s: no files of the ConfigMap there", p)
		}
	}
	var ingests []map[string]any
	for _, y := range a.pipelines {
		ingests = append(ingests, ingestSettings(t, y))
	}
	if len(ingests) != 1 {
		t.Fatalf("%d pipelines with an http_ingest input, want 1", len(ingests))
	}
	a.ingest = ingests[0]
	a.ingestURL = &url.URL{Scheme: "http", Host: str(a.ingest, "address"), Path: str(a.ingest, "path")}

	_, portText, err := net.SplitHostPort(str(a.config, "http_address"))
	if err != nil {
		t.Fatalf("agent config http_address: %v", err)
	}
	a.httpPort, _ = strconv.Atoi(portText)
	ref := envVarRef.FindStringSubmatch(str(a.ingest, "token"))
	if ref == nil {
		t.Fatalf("http_ingest token %q: want it from the environment, ${VAR}", str(a.ingest, "token"))
	}
	env := containerEnv(t, o, a.container)
	a.ingestToken = env[ref[1]]
	if len(a.ingestToken) < 16 {
		t.Errorf("the ingest token in %s is %d characters, want 16 or more (empty turns authentication off)", ref[1], len(a.ingestToken))
	}
	if strings.HasPrefix(ref[1], "SLUICE_") {
		t.Errorf("http_ingest token comes from %s: the agent rejects SLUICE_* variables it does not know", ref[1])
	}
	return a
}

// probePort resolves a probe's port (a number or a container port's name).
func probePort(t *testing.T, c *corev1.Container, p *corev1.Probe) int {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Fatalf("container %s: probe %+v is not an HTTP GET", c.Name, p)
	}
	port := p.HTTPGet.Port
	if port.StrVal == "" {
		return port.IntValue()
	}
	for _, cp := range c.Ports {
		if cp.Name == port.StrVal {
			return int(cp.ContainerPort)
		}
	}
	t.Fatalf("container %s: probe port %q names no container port", c.Name, port.StrVal)
	return 0
}

func TestManifestsHangTogether(t *testing.T) {
	o, _ := loadManifests(t)
	specs := podSpecs(o)
	if len(specs) != 2 {
		t.Fatalf("%d workloads, want the Deployment and the StatefulSet", len(specs))
	}
	for name, tmpl := range specs {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			spec := &tmpl.Spec
			a := inspect(t, o, spec)
			c := a.container
			if !a.native {
				t.Errorf("the agent is not a native sidecar (init container with restartPolicy: Always)")
			}

			// Probes: the agent's HTTP port and paths.
			host, _, _ := net.SplitHostPort(str(a.config, "http_address"))
			if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
				t.Errorf("http_address %q: the kubelet probes the pod IP, so the agent must listen on all interfaces", str(a.config, "http_address"))
			}
			for _, p := range []struct {
				name  string
				probe *corev1.Probe
				path  string
			}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}, {"startup", c.StartupProbe, "/readyz"}} {
				if p.probe == nil {
					t.Errorf("no %s probe", p.name)
					continue
				}
				if got := probePort(t, c, p.probe); got != a.httpPort {
					t.Errorf("%s probe on port %d, the agent's HTTP server is on %d", p.name, got, a.httpPort)
				}
				if p.probe.HTTPGet.Path != p.path {
					t.Errorf("%s probe path %q, want %q", p.name, p.probe.HTTPGet.Path, p.path)
				}
			}
			if sp := c.StartupProbe; sp != nil && time.Duration(sp.PeriodSeconds*sp.FailureThreshold)*time.Second < time.Minute {
				t.Errorf("startup probe allows %ds; the first start compiles the Wasm plugins, allow a minute or more", sp.PeriodSeconds*sp.FailureThreshold)
			}

			// Ingest: loopback, and what the application is told.
			if ip := net.ParseIP(a.ingestURL.Hostname()); ip == nil || !ip.IsLoopback() {
				t.Errorf("http_ingest address %q is not loopback: other pods could post events", a.ingestURL.Host)
			}
			var app *corev1.Container
			for i := range spec.Containers {
				if spec.Containers[i].Name != c.Name {
					app = &spec.Containers[i]
				}
			}
			if app == nil {
				t.Fatal("no application container")
			}
			appEnv := containerEnv(t, o, app)
			if got := appEnv["EVENTS_URL"]; got != a.ingestURL.String() {
				t.Errorf("the application posts to %q, the pipeline's http_ingest is %q", got, a.ingestURL)
			}
			if got := appEnv["INGEST_TOKEN"]; got != a.ingestToken {
				t.Errorf("the application's INGEST_TOKEN is not the agent's ingest token")
			}
			for _, cp := range c.Ports {
				if int(cp.ContainerPort) == mustPort(t, a.ingestURL.Host) {
					t.Errorf("container port %d is the loopback ingest port: listing it suggests it is reachable", cp.ContainerPort)
				}
			}

			// Volumes: every mount names a volume; config read-only; the
			// data dir writable, on the volume the agent keeps state on.
			for _, ct := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
				for _, m := range ct.VolumeMounts {
					if volume(spec, m.Name) == nil && !claimTemplate(o, m.Name) {
						t.Errorf("container %s mounts %q, which is no volume of the pod", ct.Name, m.Name)
					}
				}
			}
			if m := mountFor(c, a.configPath); m == nil || !m.ReadOnly {
				t.Errorf("the config mount is not read-only")
			}
			dataDir := str(a.config, "data_dir")
			dm := mountFor(c, dataDir)
			switch {
			case dm == nil:
				t.Errorf("data_dir %s is on no volume: with a read-only root the agent cannot write it", dataDir)
			case dm.ReadOnly:
				t.Errorf("data_dir %s is on a read-only mount", dataDir)
			case dm.MountPath != dataDir:
				t.Errorf("data_dir %s is inside mount %s, want the mount itself", dataDir, dm.MountPath)
			default:
				v := volume(spec, dm.Name)
				switch {
				case strings.HasPrefix(name, "Deployment") && (v == nil || v.EmptyDir == nil):
					t.Errorf("Deployment: data_dir volume %s is not an emptyDir", dm.Name)
				case strings.HasPrefix(name, "StatefulSet") && (v != nil || !claimTemplate(o, dm.Name)):
					t.Errorf("StatefulSet: data_dir volume %s is not a volumeClaimTemplate", dm.Name)
				}
			}
			if m := mountFor(c, "/tmp/x"); m == nil || m.ReadOnly {
				t.Errorf("/tmp is not a writable volume: lint and plugins' scratch files need it with a read-only root")
			}
			if c.WorkingDir != dataDir {
				t.Errorf("workingDir %q, want the data dir %s so relative output paths are writable", c.WorkingDir, dataDir)
			}

			// Security context.
			ps := spec.SecurityContext
			if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser == 0 {
				t.Errorf("pod securityContext: want runAsNonRoot and a non-zero runAsUser, got %+v", ps)
			} else if uid := dockerfileUID(t); *ps.RunAsUser != uid {
				t.Errorf("runAsUser %d, the image's USER is %d", *ps.RunAsUser, uid)
			}
			if ps == nil || ps.FSGroup == nil {
				t.Errorf("pod securityContext: no fsGroup, so the state volume may not be writable by the agent")
			}
			if ps == nil || ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("pod securityContext: want seccompProfile RuntimeDefault")
			}
			if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
				t.Errorf("automountServiceAccountToken is not false: the agent needs no API access")
			}
			for _, ct := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
				sc := ct.SecurityContext
				switch {
				case sc == nil:
					t.Errorf("container %s: no securityContext", ct.Name)
					continue
				case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
					t.Errorf("container %s: root filesystem not read-only", ct.Name)
				case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
					t.Errorf("container %s: allowPrivilegeEscalation not false", ct.Name)
				case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
					t.Errorf("container %s: capabilities %+v, want drop ALL and add none", ct.Name, sc.Capabilities)
				case sc.Privileged != nil && *sc.Privileged:
					t.Errorf("container %s: privileged", ct.Name)
				case sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot, sc.RunAsUser != nil && *sc.RunAsUser == 0:
					t.Errorf("container %s: overrides the pod to run as root", ct.Name)
				}
				for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					if _, ok := ct.Resources.Requests[r]; !ok {
						t.Errorf("container %s: no %s request", ct.Name, r)
					}
					if _, ok := ct.Resources.Limits[r]; !ok {
						t.Errorf("container %s: no %s limit", ct.Name, r)
					}
				}
			}
			if env := containerEnv(t, o, c); env["GOMEMLIMIT"] == "" {
				t.Errorf("the agent has no GOMEMLIMIT from its memory limit")
			}

			// Shutdown: the grace period covers the agent's drain.
			st, err := time.ParseDuration(str(a.config, "shutdown_timeout"))
			if err != nil {
				t.Fatalf("shutdown_timeout: %v", err)
			}
			if grace := spec.TerminationGracePeriodSeconds; grace == nil || time.Duration(*grace)*time.Second < st+10*time.Second {
				t.Errorf("terminationGracePeriodSeconds %v: want at least shutdown_timeout (%v) + 10s for the servers' own shutdown", grace, st)
			}
			if cmSize(o) > 1<<20 {
				t.Errorf("the ConfigMaps hold %d bytes; Kubernetes allows 1 MiB", cmSize(o))
			}
		})
	}

	// The two workloads run the same agent the same way.
	d, s := o.deployments["example-app"], o.statefulSets["example-app"]
	if d == nil || s == nil {
		t.Fatal("want Deployment and StatefulSet example-app")
	}
	if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("Deployment: want maxUnavailable 0, so a pod whose agent never gets ready stops the rollout")
	}
	dc, _ := agentContainer(t, &d.Spec.Template.Spec)
	sc, _ := agentContainer(t, &s.Spec.Template.Spec)
	if a, b := mustJSON(t, dc), mustJSON(t, sc); a != b {
		t.Errorf("the sidecar differs between the Deployment and the StatefulSet:\n%s\n%s", a, b)
	}
	if s.Spec.ServiceName == "" || o.services[s.Spec.ServiceName] == nil || o.services[s.Spec.ServiceName].Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("StatefulSet serviceName %q: want a headless Service of that name in the manifests", s.Spec.ServiceName)
	}
}

func claimTemplate(o objects, name string) bool {
	for _, s := range o.statefulSets {
		for _, c := range s.Spec.VolumeClaimTemplates {
			if c.Name == name {
				return true
			}
		}
	}
	return false
}

func cmSize(o objects) int {
	n := 0
	for _, cm := range o.configMaps {
		for k, v := range cm.Data {
			n += len(k) + len(v)
		}
	}
	return n
}

func mustPort(t *testing.T, hostport string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// dockerfileUID is the numeric USER of deploy/container/Dockerfile.
func dockerfileUID(t *testing.T) int64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^USER\s+(\d+)`).FindStringSubmatch(readRepoFile(t, "deploy/container/Dockerfile"))
	if m == nil {
		t.Fatal("deploy/container/Dockerfile has no numeric USER")
	}
	uid, _ := strconv.ParseInt(m[1], 10, 64)
	return uid
}

// writeConfigMapVolume lays out files as the kubelet does for a ConfigMap
// volume: the data in a timestamped directory, a ..data symlink to it, and
// each top-level entry a symlink through ..data, so the agent reads its
// pipelines directory the way it will in a pod.
func writeConfigMapVolume(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	ts := "..2026_01_01_00_00_00.000000001"
	top := map[string]bool{}
	for rel, data := range files {
		p := filepath.Join(dir, ts, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		top[strings.SplitN(rel, "/", 2)[0]] = true
	}
	if err := os.Symlink(ts, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range top {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSidecarRuns starts the agent built from this checkout the way the
// Deployment's sidecar starts it: its arguments, its environment with the
// Secret's tokens, its working directory, the ConfigMap laid out as the
// kubelet mounts it, an empty state volume and /tmp. Two things differ, so
// the test can run beside others on one machine: the agent's HTTP server
// and the ingest listen on free loopback ports, and Kafka is an in-process
// cluster. Then it checks what a user would: probes, events in with the
// token, predictions and dead letters out, a clean stop within the grace
// period, and the state still there after a restart (a container restart
// keeps the emptyDir).
func TestSidecarRuns(t *testing.T) {
	bin := agentBinary(t)
	o, _ := loadManifests(t)
	d := o.deployments["example-app"]
	if d == nil {
		t.Fatal("no Deployment example-app")
	}
	spec := &d.Spec.Template.Spec
	a := inspect(t, o, spec)
	c := a.container
	root := t.TempDir()

	// Each mount of the agent container becomes a directory here.
	hostDir := map[string]string{}
	for _, m := range c.VolumeMounts {
		hostDir[m.MountPath] = filepath.Join(root, m.Name)
		if err := os.MkdirAll(hostDir[m.MountPath], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mounts := slices.Collect(maps.Keys(hostDir))
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	var pairs []string
	for _, m := range mounts {
		pairs = append(pairs, m, hostDir[m])
	}
	// One pass, longest mount first, so a replaced path is not replaced
	// again.
	toHost := strings.NewReplacer(pairs...).Replace
	ingestAddr := freeAddr(t)
	for _, m := range c.VolumeMounts {
		v := volume(spec, m.Name)
		if v == nil || v.ConfigMap == nil {
			continue
		}
		files := configMapFiles(t, o, v)
		for rel, data := range files {
			data = toHost(data)
			if _, ok := a.pipelines[path.Join(m.MountPath, rel)]; ok {
				data = strings.ReplaceAll(data, a.ingestURL.Host, ingestAddr)
			}
			files[rel] = data
		}
		writeConfigMapVolume(t, hostDir[m.MountPath], files)
	}

	kafka := kafkaCluster(t)
	httpAddr := freeAddr(t)
	env := containerEnv(t, o, c)
	env["SLUICE_HTTP_ADDRESS"] = httpAddr
	env["SLUICE_KAFKA_BROKERS"] = strings.Join(kafka.ListenAddrs(), ",")
	env["TMPDIR"] = toHost("/tmp")
	env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
	var envList []string
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	argv := []string{bin}
	for _, arg := range append(slices.Clone(c.Command), c.Args...) {
		argv = append(argv, toHost(arg))
	}
	startLimit := time.Duration(c.StartupProbe.PeriodSeconds*c.StartupProbe.FailureThreshold) * time.Second
	grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	ingestURL := "http://" + ingestAddr + a.ingestURL.Path

	p := start(t, argv, envList, toHost(c.WorkingDir))
	began := time.Now()
	p.waitReady(t, "http://"+httpAddr, startLimit)
	t.Logf("ready in %v (the startup probe allows %v)", time.Since(began).Round(time.Millisecond), startLimit)
	dep := &deployment{agent: p, httpBase: "http://" + httpAddr, httpToken: env["SLUICE_HTTP_TOKEN"],
		ingestURL: ingestURL, ingestTok: a.ingestToken, kafka: kafka, sourceHead: "sidecar:", stopLimit: grace}
	dep.exercise(t)

	// A container restart: same emptyDir, so the user's features go on.
	restartKeepsState(t, func() *proc { return start(t, argv, envList, toHost(c.WorkingDir)) },
		"http://"+httpAddr, ingestURL, a.ingestToken, startLimit, grace)
}
