package model

import (
	"testing"
)

func mustConfig(t testing.TB, config string) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(config))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return c
}

// mustLoad builds the model of config: the inline one when file is nil.
func mustLoad(t testing.TB, config string, file []byte) *Model {
	t.Helper()
	m, err := mustConfig(t, config).Load(file)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return m
}
