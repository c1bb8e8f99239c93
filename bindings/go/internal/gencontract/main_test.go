package main

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
)

// TestContractGenIsCurrent fails when ../../contract_gen.go is not what http.json generates.
// Only a copy of the module alone (as the module cache holds it) has no ../contract: the test
// skips there, except under CI=true, where the checkout is always whole.
func TestContractGenIsCurrent(t *testing.T) {
	doc, err := os.ReadFile("../../../contract/http.json")
	if errors.Is(err, fs.ErrNotExist) {
		if os.Getenv("CI") == "true" {
			t.Fatal("../contract/http.json is absent under CI=true: contract_gen.go cannot be checked")
		}
		t.Skip("no ../contract/http.json beside the module (a copy of bindings/go alone)")
	}
	if err != nil {
		t.Fatal(err)
	}
	want, err := Generate(doc)
	if err != nil {
		t.Fatalf("http.json: %v", err)
	}
	got, err := os.ReadFile("../../contract_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("contract_gen.go is stale: run `go generate` in bindings/go")
	}
}

func TestGenerateRefusesBadContracts(t *testing.T) {
	good := `{"realm": "api", "retry_after_s": 5, "closed": "TC_X", "otherwise": "TC_X",
		"no_bearer_token": {"code": "TC_X", "status": 401, "message": "m", "challenge": true, "error": null},
		"answers": {"TC_X": {"status": 500, "message": "m", "challenge": false, "error": null}}}`
	if _, err := Generate([]byte(good)); err != nil {
		t.Fatalf("the good contract: %v", err)
	}
	for name, edit := range map[string][2]string{
		"status":              {`"status": 500`, `"status": 200`},
		"no message":          {`"status": 500, "message": "m"`, `"status": 500, "message": ""`},
		"error, no challenge": {`"challenge": false, "error": null`, `"challenge": false, "error": "invalid_token"`},
		"bad code":            {`"answers": {"TC_X"`, `"answers": {"tc_x"`},
		"otherwise unknown":   {`"otherwise": "TC_X"`, `"otherwise": "TC_Y"`},
		"not JSON":            {`{`, `[`},
	} {
		if _, err := Generate([]byte(strings.Replace(good, edit[0], edit[1], 1))); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
