package check

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// root is the repository, seen from this module.
const root = "../.."

// heraldServices are the compose services that run a Herald binary, in start order.
var heraldServices = []string{"auth", "ingest-1", "ingest-2", "edge-1", "edge-2"}

func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(abs, "docker-compose.yml")},
		cli.WithWorkingDirectory(abs), cli.WithName("herald"),
		cli.WithEnv([]string{"HERALD_ADMIN_PASSWORD=" + adminPassword}))
	if err != nil {
		t.Fatalf("compose options: %v", err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return p
}

const adminPassword = "deploy-check-password"

// TestComposeFile: the fleet the README promises, every dependency and health check resolving.
func TestComposeFile(t *testing.T) {
	p := loadCompose(t)
	want := []string{"auth", "edge-1", "edge-2", "haproxy", "ingest-1", "ingest-2", "nats-0", "nats-1", "nats-2", "redis", "signing-key"}
	if got := slices.Sorted(maps.Keys(p.Services)); !slices.Equal(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}
	for name, s := range p.Services {
		if name != "signing-key" && (s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) < 2) {
			t.Errorf("%s: no health check", name)
		}
		for dep, d := range s.DependsOn {
			target, ok := p.Services[dep]
			switch {
			case !ok:
				t.Errorf("%s depends on unknown %s", name, dep)
			case d.Condition == types.ServiceConditionHealthy && target.HealthCheck == nil:
				t.Errorf("%s waits for %s to be healthy, which has no health check", name, dep)
			case d.Condition == "":
				t.Errorf("%s depends on %s without a condition", name, dep)
			}
		}
		for _, port := range s.Ports {
			if port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes port %d on %q, want 127.0.0.1 only", name, port.Target, port.HostIP)
			}
		}
	}
	for _, name := range heraldServices {
		s := p.Services[name]
		if s.Build == nil || s.Build.Args["SERVICE"] == nil {
			t.Errorf("%s: not built from deploy/docker/Dockerfile with a SERVICE", name)
			continue
		}
		for _, dep := range []string{"nats-0", "nats-1", "nats-2", "redis"} {
			if _, ok := s.DependsOn[dep]; !ok {
				t.Errorf("%s does not wait for %s", name, dep)
			}
		}
	}
	if got := p.Services["haproxy"].Ports; len(got) != 2 {
		t.Errorf("haproxy publishes %d ports, want HTTP and gRPC", len(got))
	}
	if auth := p.Services["auth"]; auth.DependsOn["signing-key"].Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("auth does not wait for the signing key to be made")
	}
}

// TestHAProxyConfig runs HAProxy's own check on the config.
func TestHAProxyConfig(t *testing.T) {
	bin := haproxyBinary(t)
	out, err := exec.Command(bin, "-c", "-f", filepath.Join(root, "deploy/lb/haproxy.cfg")).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}

func haproxyBinary(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/haproxy"); err != nil {
			t.Fatal("haproxy not installed: run `make deps` (Debian package haproxy)")
		}
	}
	return bin
}

// k8sObjects decodes every document of the deploy/k8s files with the Kubernetes API types,
// strictly: an unknown field or kind fails.
func k8sObjects(t *testing.T) []runtime.Object {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "deploy/k8s/*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no deploy/k8s/*.yaml: %v", err)
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{appsv1.AddToScheme, corev1.AddToScheme,
		policyv1.AddToScheme, autoscalingv2.AddToScheme, networkingv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	var objs []runtime.Object
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			obj, _, err := decoder.Decode(doc, nil, nil)
			if err != nil {
				t.Fatalf("%s: %v\n%s", f, err, doc)
			}
			objs = append(objs, obj)
		}
	}
	return objs
}

// TestKubernetesManifests: the same fleet as compose, with probes, a PodDisruptionBudget and
// an HPA for edges, NATS as a 3-node StatefulSet, and the same HERALD_* environment per service.
func TestKubernetesManifests(t *testing.T) {
	objs := k8sObjects(t)
	deps := map[string]*appsv1.Deployment{}
	var pdbEdge, hpaEdge bool
	var nats *appsv1.StatefulSet
	routes := map[string]string{}
	for _, o := range objs {
		switch o := o.(type) {
		case *appsv1.Deployment:
			deps[o.Name] = o
		case *appsv1.StatefulSet:
			if o.Name == "nats" {
				nats = o
			}
		case *policyv1.PodDisruptionBudget:
			pdbEdge = pdbEdge || o.Spec.Selector.MatchLabels["app"] == "edge"
		case *autoscalingv2.HorizontalPodAutoscaler:
			hpaEdge = hpaEdge || (o.Spec.ScaleTargetRef.Kind == "Deployment" && o.Spec.ScaleTargetRef.Name == "edge")
		case *networkingv1.Ingress:
			for _, rule := range o.Spec.Rules {
				for _, p := range rule.HTTP.Paths {
					routes[p.Path] = p.Backend.Service.Name
				}
			}
		case *corev1.Service:
		default:
			t.Errorf("unexpected object %T", o)
		}
	}
	if nats == nil || nats.Spec.Replicas == nil || *nats.Spec.Replicas != 3 {
		t.Errorf("NATS is not a 3-replica StatefulSet")
	}
	if !pdbEdge || !hpaEdge {
		t.Errorf("edges need a PodDisruptionBudget (%v) and an HPA (%v)", pdbEdge, hpaEdge)
	}
	for path, svc := range map[string]string{"/api/v1/auth/login": "auth", "/login": "auth",
		"/api/v1/agents/ws": "ingest", "/api/v1/api-keys/me": "ingest", "/": "edge"} {
		if routes[path] != svc {
			t.Errorf("ingress sends %s to %q, want %s", path, routes[path], svc)
		}
	}
	compose := loadCompose(t)
	for name, composeName := range map[string]string{"auth": "auth", "ingest": "ingest-1", "edge": "edge-1", "redis": "redis"} {
		d := deps[name]
		if d == nil {
			t.Errorf("no Deployment %s", name)
			continue
		}
		c := d.Spec.Template.Spec.Containers[0]
		if c.ReadinessProbe == nil || c.LivenessProbe == nil {
			t.Errorf("%s: needs readiness and liveness probes", name)
		}
		if name == "redis" {
			continue
		}
		if c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" ||
			c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("%s: readiness must be /readyz and liveness /healthz", name)
		}
		var k8sEnv []string
		for _, e := range c.Env {
			k8sEnv = append(k8sEnv, e.Name)
		}
		composeEnv := slices.Collect(maps.Keys(compose.Services[composeName].Environment))
		slices.Sort(k8sEnv)
		slices.Sort(composeEnv)
		if !slices.Equal(k8sEnv, composeEnv) {
			t.Errorf("%s: Kubernetes env %v, compose env %v", name, k8sEnv, composeEnv)
		}
		for _, e := range c.Env {
			if cv := compose.Services[composeName].Environment[e.Name]; e.ValueFrom == nil && cv != nil &&
				!strings.Contains(*cv, "nats-") && *cv != e.Value {
				t.Errorf("%s: %s is %q in Kubernetes, %q in compose", name, e.Name, e.Value, *cv)
			}
		}
	}
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for line := range bytes.SplitSeq(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}
