package codec_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
)

func TestParseMigration(t *testing.T) {
	cat := schema.Default()
	for _, none := range []string{"", "null", " undefined "} {
		if m, err := codec.ParseMigration(none, cat); m != nil || err != nil {
			t.Errorf("%q: %v %v", none, m, err)
		}
	}
	// As WatermelonDB's getSyncChanges builds it.
	m, err := codec.ParseMigration(`{"from":8,"tables":["appointments"],"columns":[{"table":"patients","columns":["citizenship","camp"]}]}`, cat)
	want := &codec.Migration{From: 8, Tables: []string{"appointments"}, Columns: map[string][]string{"patients": {"citizenship", "camp"}}}
	if err != nil || !reflect.DeepEqual(m, want) {
		t.Fatalf("parse: %+v %v", m, err)
	}
	back, err := codec.ParseMigration(codec.MigrationJSON(codec.MigrationToProto(m)), cat)
	if err != nil || !reflect.DeepEqual(back, want) {
		t.Errorf("JSON round trip: %+v %v", back, err)
	}
	if p, err := codec.MigrationFromProto(codec.MigrationToProto(m), cat); err != nil || !reflect.DeepEqual(p, want) {
		t.Errorf("proto round trip: %+v %v", p, err)
	}
	if m, _ := codec.ParseMigration(`{"from":3,"tables":[],"columns":[]}`, cat); !m.Empty() {
		t.Errorf("a migration naming nothing is not empty")
	}
	for text, why := range map[string]string{
		`{"from":8,"tables":["nope"],"columns":[]}`:                                  "unknown table",
		`{"from":8,"tables":[],"columns":[{"table":"nope","columns":["a"]}]}`:        "unknown table in columns",
		`{"from":8,"tables":[],"columns":[{"table":"patients","columns":["shoe"]}]}`: "unknown column",
		`{"tables":[],"columns":[]}`:                                                 "no from",
		`{"from":-1}`:                                                                "negative from",
		`{"from":1,"extra":true}`:                                                    "unknown key",
		`{"from":1} {}`:                                                              "trailing text",
		`[1,2]`:                                                                      "not an object",
		`{"from":1,"tables":"patients"}`:                                             "tables not a list",
	} {
		if _, err := codec.ParseMigration(text, cat); !errors.Is(err, codec.ErrInvalidMigration) {
			t.Errorf("%s (%s): %v", text, why, err)
		}
	}
}
