package tokenchecker_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	tokenchecker "github.com/tokenchecker/tokenchecker/bindings/go"
)

// libraryConfigKeys are a valid value, not the default (as the Go field holds it), for each of
// the library's top-level configuration keys. TestConfigKeys checks that these keys and
// Config's JSON tags are exactly the library's (tc_library_info's config_keys), and that the
// library accepts each of them as Config renders it.
func libraryConfigKeys(t *testing.T) map[string]any {
	return map[string]any{
		"client_id":               "test-client",
		"client_secret":           "test-secret",
		"expected_scopes":         []string{"urn:globus:auth:scope:test:all", "openid"},
		"expected_audience":       "test-client",
		"auth_url":                fake.URL,
		"groups_url":              fake.URL,
		"scope_match":             "all",
		"leeway_s":                tokenchecker.Int(0),
		"fetch_groups":            "never",
		"verify_credentials":      tokenchecker.Bool(false),
		"connect_timeout_ms":      1500,
		"request_timeout_ms":      5000,
		"call_timeout_ms":         20000,
		"max_retries":             tokenchecker.Int(0),
		"max_token_bytes":         4096,
		"max_response_bytes":      65536,
		"max_concurrent_requests": 8,
		"stale_if_error_s":        60,
		"refresh_ahead_s":         5,
		"allow_insecure_http":     true,
		"ca_certs":                []string{testCACert(t)},
		"cache_config":            &tokenchecker.CacheConfig{}, // the default cache, anew
	}
}

// configFields maps Config's JSON keys to its fields' indexes.
func configFields(t *testing.T) map[string]int {
	fields := map[string]int{}
	typ := reflect.TypeFor[tokenchecker.Config]()
	for i := range typ.NumField() {
		name, opts, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" || opts != "omitempty" {
			t.Errorf("Config.%s: json tag %q (want \"<key>,omitempty\")", typ.Field(i).Name, typ.Field(i).Tag.Get("json"))
		}
		fields[name] = i
	}
	return fields
}

func TestConfigKeys(t *testing.T) {
	keys := libraryConfigKeys(t)
	fields := configFields(t)
	lib, err := tokenchecker.LibraryInfo()
	if err != nil {
		t.Fatal(err)
	}
	if len(lib.ConfigKeys) == 0 {
		t.Fatal("the library lists no configuration keys")
	}
	for _, key := range lib.ConfigKeys {
		if _, ok := keys[key]; !ok {
			t.Errorf("the library's key %q has no value in libraryConfigKeys", key)
		}
	}
	for key := range keys {
		if !slices.Contains(lib.ConfigKeys, key) {
			t.Errorf("libraryConfigKeys has %q, which is not among the library's keys %v", key, lib.ConfigKeys)
		}
	}
	for key := range keys {
		if _, ok := fields[key]; !ok {
			t.Errorf("the library's key %q has no Config field", key)
		}
	}
	for key := range fields {
		if _, ok := keys[key]; !ok {
			t.Errorf("Config has a field for %q, which is not a library key", key)
		}
	}

	// Each key, set through its Config field, is accepted by the library (which refuses
	// unknown keys, naming them).
	sorted := make([]string, 0, len(keys))
	for key := range keys {
		sorted = append(sorted, key)
	}
	slices.Sort(sorted)
	for _, key := range sorted {
		i, ok := fields[key]
		if !ok {
			continue
		}
		t.Run(key, func(t *testing.T) {
			cfg := config()
			field := reflect.ValueOf(&cfg).Elem().Field(i)
			field.Set(reflect.ValueOf(keys[key]))
			doc, err := cfg.JSON()
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal([]byte(doc), &m); err != nil || m[key] == nil {
				t.Fatalf("the document does not set %q: %s (%v)", key, doc, err)
			}
			c, err := tokenchecker.New(cfg)
			if err != nil {
				t.Fatalf("the library refuses %s: %v", doc, err)
			}
			c.Close()
		})
	}

	// The check above means something: a misspelt key is refused, and named.
	_, err = tokenchecker.New(tokenchecker.Config{RawJSON: `{"client_id": "test-client",
		"client_secret": "test-secret", "expected_scopes": ["x"], "verify_credentials": false,
		"max_concurent_requests": 8}`})
	if !errors.Is(err, tokenchecker.ErrInvalidConfig) || !strings.Contains(err.Error(), "max_concurent_requests") {
		t.Fatalf("a misspelt key: %v", err)
	}
}

// testCACert writes a self-signed CA certificate (PEM) to a temporary file and returns its
// path.
func testCACert(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tokenchecker test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
