package migration

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestMigrationsOrder(t *testing.T) {
	fsys := fstest.MapFS{
		"m/10_ten.sql":          {Data: []byte("SELECT 10")},
		"m/2_two.sql":           {Data: []byte("SELECT 2")},
		"m/0001_one.sql":        {Data: []byte("SELECT 1")},
		"m/9_nine_b.sql":        {Data: []byte("SELECT 9")},
		"other/3_x.sql":         {Data: []byte("not read")},
		"m0/1_other.sql":        {Data: []byte("not read")},
		"m/2147483647_last.sql": {Data: []byte("SELECT max")},
	}
	got, err := Read(fsys, "m")
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	want := []Migration{
		{1, "0001_one.sql", "SELECT 1"},
		{2, "2_two.sql", "SELECT 2"},
		{9, "9_nine_b.sql", "SELECT 9"},
		{10, "10_ten.sql", "SELECT 10"},
		{MaxVersion, "2147483647_last.sql", "SELECT max"},
	}
	if len(got) != len(want) {
		t.Fatalf("Read: got %+v; want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("migration %d: got %+v; want %+v", i, got[i], want[i])
		}
	}
}

func TestMigrationsRefused(t *testing.T) {
	tests := []struct {
		name  string
		files []string
		want  string
	}{
		{"no version", []string{"init.sql"}, "init.sql: name must start with a version"},
		{"no underscore", []string{"1.sql"}, "1.sql: name must start with a version"},
		{"version zero", []string{"0_init.sql"}, "0_init.sql: name must start with a version"},
		{"negative version", []string{"-1_init.sql"}, "-1_init.sql: name must start with a version"},
		{"version past 32 bits", []string{"2147483648_init.sql"}, "2147483648_init.sql: name must start with a version"},
		{"version not a number", []string{"v1_init.sql"}, "v1_init.sql: name must start with a version"},
		{"shared version", []string{"1_a.sql", "01_b.sql"}, "share version 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for _, f := range tt.files {
				fsys["m/"+f] = &fstest.MapFile{Data: []byte("SELECT 1")}
			}
			_, err := Read(fsys, "m")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Read(%v): got error %v; want one saying %q", tt.files, err, tt.want)
			}
		})
	}
	if _, err := Read(fstest.MapFS{}, "missing"); err == nil {
		t.Error("Read of a missing directory: got nil error; want one")
	}
}
