package tokenchecker

import (
	"encoding/json"
	"reflect"
	"testing"
)

var decodeSeeds = []string{
	`{"active":true,"sub":"a11ce000-0000-4000-8000-000000000001","effective_identity":"urn:globus:auth:identity:a11ce000-0000-4000-8000-000000000001","identities":["a11ce000-0000-4000-8000-000000000001","a11ce000-0000-4000-8000-000000000002"],"username":"alice@example.org","name":"Alice","email":"alice@example.org","client_id":"test-client","scopes":["urn:globus:auth:scope:test:all","openid"],"aud":["test-client"],"exp":1767225600,"nbf":1767222000,"iat":1767222000,"groups":null,"groups_status":"not_fetched","principals":["urn:globus:auth:identity:a11ce000-0000-4000-8000-000000000001"],"cache":{"source":"memory","age_ms":12}}`,
	`{"active":true,"sub":null,"identities":[],"username":null,"scopes":[],"aud":[],"exp":null,"nbf":null,"iat":null,"groups":["g1","g2"],"groups_status":"available","principals":[],"cache":{"source":"network","age_ms":0},"authorization":{"authorized":true,"matched":"public"}}`,
	`{"groups_status":"unavailable","groups_error":"the \"Groups\" API said: 503\n\t\\ \/ \u00e9 \ud83d\ude00 \u0000"}`,
	` { "name" : "Jos\u00e9 Ñandú" , "exp" : -5 , "future" : {"a":[1,2.5e3,true,false,null,"x\"y"]} } `,
	`{"SUB":"upper"}`, `{"ſub":"long s"}`, `{"exp":1.0}`, `{"exp":01}`, `{"exp":9223372036854775807}`,
	`{"exp":9223372036854775808}`, `{"name":"\ud800"}`, `{"name":"\udc00\ud800"}`, `{"name":"bad\xff"}`,
	`{"a":1}x`, `{"a":"\x"}`, `{"cache":null}`, `{"authorization":null}`, `{"sub":"a","sub":"b"}`,
	`{"identities":["a"],"identities":null}`, `null`, `[]`, `{}`, `{"active":"true"}`, `{"exp":-0}`,
	`{"s\u0075b":"escaped key"}`, `{"x":{"y":{"z":[[[]]]}}}`, `{"exp":1e3}`, `{"groups":[1]}`,
}

// FuzzDecodeState checks that the fast decoder agrees with encoding/json whenever it accepts
// a document, and that decodeState always agrees with encoding/json.
func FuzzDecodeState(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		var want wireState
		wantErr := json.Unmarshal(doc, &want)
		var fast wireState
		if fastDecodeState(string(doc), &fast) {
			if wantErr != nil {
				t.Fatalf("fast decoder accepted %q, encoding/json says %v", doc, wantErr)
			}
			if !reflect.DeepEqual(fast, want) {
				t.Fatalf("%q:\nfast %+v\njson %+v", doc, fast, want)
			}
		}
		var got wireState
		err := decodeState(doc, &got)
		if (err == nil) != (wantErr == nil) || (err == nil && !reflect.DeepEqual(got, want)) {
			t.Fatalf("decodeState(%q) = %+v, %v; encoding/json %+v, %v", doc, got, err, want, wantErr)
		}
	})
}

func TestFastDecoderTakesTheRealDocuments(t *testing.T) {
	for _, s := range decodeSeeds[:4] {
		var w wireState
		if !fastDecodeState(s, &w) {
			t.Errorf("the fast decoder gave up on %s", s)
		}
	}
}

func BenchmarkDecodeState(b *testing.B) {
	doc := []byte(decodeSeeds[0])
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := stateResult(StatusOK, doc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var w wireState
			if err := json.Unmarshal(doc, &w); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestErrorFromDoc(t *testing.T) {
	for doc, want := range map[string]string{
		`{"error":{"code":"TC_INACTIVE_TOKEN","message":"the token is not active"}}`: "the token is not active",
		`{"error":{"message":"say \"hi\"","code":"X"}}`:                              `say "hi"`,
		`{"error":{"code":"X","message":"m","extra":1}}`:                             "m",
		`{"error":{"MESSAGE":"upper"}}`:                                              "upper",
		`not json`:                                                                   "the library reported TC_INACTIVE_TOKEN without a message",
		``:                                                                           "the library reported TC_INACTIVE_TOKEN without a message",
	} {
		if got := errorFromDoc(StatusInactiveToken, []byte(doc)).Message; got != want {
			t.Errorf("%s: %q, want %q", doc, got, want)
		}
	}
}
