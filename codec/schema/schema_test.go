package schema

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestDefaultBuilds(t *testing.T) {
	c := Default()
	if c == nil {
		t.Fatal("Default() = nil")
	}
	if Default() != c {
		t.Fatal("Default() built twice")
	}
	if got := len(c.Names()); got != 21 {
		t.Fatalf("Default() has %d tables, want 21", got)
	}
}

func TestDefaultFlows(t *testing.T) {
	want := map[Flow][]string{
		Synced: {
			"appointments", "clinic_departments", "clinic_inventory", "clinics",
			"dispensing_records", "drug_catalogue", "event_forms", "events",
			"patient_additional_attributes", "patient_problems", "patient_vitals",
			"patients", "prescription_items", "prescriptions", "registration_forms",
			"users", "visits",
		},
		Down:  {"app_config", "user_clinic_permissions"},
		Local: {"event_logs", "peers"},
	}
	got := map[Flow][]string{}
	c := Default()
	for _, n := range c.Names() {
		tb, _ := c.Table(n)
		got[tb.Flow] = append(got[tb.Flow], n)
	}
	if len(want[Synced]) != 17 || len(got[Synced]) != 17 {
		t.Errorf("synced tables: got %d, want 17", len(got[Synced]))
	}
	for f, names := range want {
		if !slices.Equal(got[f], names) {
			t.Errorf("%s tables:\n got %v\nwant %v", f, got[f], names)
		}
	}
}

// TestDefaultColumns spot-checks columns against reference §4.1.
func TestDefaultColumns(t *testing.T) {
	for _, tc := range []struct {
		table, col string
		typ        Type
		optional   bool
	}{
		{"patients", "date_of_birth", Date, false},
		{"patients", "primary_clinic_id", String, true},
		{"patients", "additional_data", JSON, false},
		{"patients", "is_deleted", Bool, false},
		{"patients", "deleted_at", Timestamp, true},
		{"patients", "last_modified", Timestamp, true},
		{"patients", "server_created_at", Timestamp, true},
		{"patient_vitals", "height_cm", Number, true},
		{"patient_vitals", "timestamp", Timestamp, false},
		{"drug_catalogue", "sale_price", Decimal, false},
		{"drug_catalogue", "dosage_quantity", Decimal, false},
		{"drug_catalogue", "min_stock_level", Number, false},
		{"drug_catalogue", "server_created_at", Timestamp, true},
		{"events", "form_data", JSON, false},
		{"visits", "check_in_timestamp", Timestamp, false},
		{"appointments", "duration", Number, true},
		{"appointments", "departments", JSON, false},
		{"event_forms", "clinic_ids", JSON, true}, // null means every clinic
		{"event_forms", "translations", JSON, true},
		{"prescriptions", "filled_at", Timestamp, true},
		{"prescriptions", "items", JSON, false},
		{"patient_additional_attributes", "date_value", Timestamp, true},
		{"patient_additional_attributes", "boolean_value", Bool, true},
		{"patient_additional_attributes", "last_modified", Timestamp, false},
		{"patient_problems", "severity_score", Number, true},
		{"clinic_inventory", "quantity_available", Number, false},
		{"clinic_inventory", "batch_expiry_date", Timestamp, false},
		{"prescription_items", "refills_used", Number, false},
		{"dispensing_records", "dispensed_at", Timestamp, false},
		{"registration_forms", "clinic_id", String, true},
		{"clinics", "attributes", JSON, true},
		{"clinics", "address", String, true},
		{"user_clinic_permissions", "is_clinic_admin", Bool, false},
		{"app_config", "value", String, false},
		{"event_logs", "changes", JSON, false},
		{"event_logs", "synced", Bool, false},
		{"peers", "port", Number, true},
		{"peers", "metadata", JSON, true},
	} {
		tb, ok := Default().Table(tc.table)
		if !ok {
			t.Errorf("no table %s", tc.table)
			continue
		}
		col, ok := tb.Column(tc.col)
		if !ok {
			t.Errorf("%s: no column %s", tc.table, tc.col)
			continue
		}
		if col.Type != tc.typ || col.Optional != tc.optional {
			t.Errorf("%s.%s = %s optional=%v, want %s optional=%v",
				tc.table, tc.col, col.Type, col.Optional, tc.typ, tc.optional)
		}
		if col.Secret {
			t.Errorf("%s.%s is secret", tc.table, tc.col)
		}
	}
}

func TestDefaultInvariants(t *testing.T) {
	c := Default()
	for _, n := range c.Names() {
		tb, _ := c.Table(n)
		if tb.Flow == Synced {
			for _, name := range []string{"last_modified", "server_created_at"} {
				if col, ok := tb.Column(name); !ok || col.Type != Timestamp {
					t.Errorf("%s: %s missing or not a timestamp", n, name)
				}
			}
		}
		if tb.Flow != Local {
			for _, name := range []string{"created_at", "updated_at"} {
				if col, ok := tb.Column(name); !ok || col.Type != Timestamp || col.Optional {
					t.Errorf("%s: %s missing or not a required timestamp", n, name)
				}
			}
		}
		if col, ok := tb.Column("is_deleted"); ok && (col.Type != Bool || col.Optional) {
			t.Errorf("%s.is_deleted: %s optional=%v", n, col.Type, col.Optional)
		}
		for _, col := range tb.Columns {
			if col.Secret && !(n == "users" && col.Name == "hashed_password") {
				t.Errorf("%s.%s is secret", n, col.Name)
			}
		}
		if tb.HubOnly != (n == "users") {
			t.Errorf("%s: HubOnly = %v", n, tb.HubOnly)
		}
	}

	users, _ := c.Table("users")
	pw, ok := users.Column("hashed_password")
	if !ok || !pw.Secret || !pw.Optional || pw.Type != String {
		t.Errorf("users.hashed_password = %+v, %v", pw, ok)
	}
}

func TestDefaultClinicColumns(t *testing.T) {
	want := map[string]string{
		"patients":                "primary_clinic_id",
		"visits":                  "clinic_id",
		"appointments":            "clinic_id",
		"clinic_departments":      "clinic_id",
		"clinic_inventory":        "clinic_id",
		"dispensing_records":      "clinic_id",
		"prescription_items":      "clinic_id",
		"users":                   "clinic_id",
		"user_clinic_permissions": "clinic_id",
		"prescriptions":           "pickup_clinic_id",
		"registration_forms":      "clinic_id",
		"clinics":                 "id",
		"event_forms":             "clinic_ids",
	}
	c := Default()
	for _, n := range c.Names() {
		tb, _ := c.Table(n)
		if tb.ClinicColumn != want[n] {
			t.Errorf("%s: ClinicColumn = %q, want %q", n, tb.ClinicColumn, want[n])
		}
	}
}

// TestDefaultFollows: the tables without a clinic of their own that hold
// patient data follow their patient (and visit); no synced table is left
// in every clinic's scope but the global ones.
func TestDefaultFollows(t *testing.T) {
	pv := "patient_id>patients,visit_id>visits"
	want := map[string]string{
		"events":                        pv,
		"patient_vitals":                pv,
		"patient_problems":              pv,
		"prescriptions":                 pv,
		"patient_additional_attributes": "patient_id>patients",
	}
	global := []string{"app_config", "drug_catalogue"}
	c := Default()
	for _, n := range c.Names() {
		tb, _ := c.Table(n)
		var links []string
		for _, l := range tb.Follows {
			links = append(links, l.Column+">"+l.Table)
		}
		if got := strings.Join(links, ","); got != want[n] {
			t.Errorf("%s: Follows = %q, want %q", n, got, want[n])
		}
		if tb.Flow != Local && tb.ClinicColumn == "" && len(tb.Follows) == 0 && !slices.Contains(global, n) {
			t.Errorf("%s: neither a clinic column nor parents: in every clinic's scope", n)
		}
	}
	// A push applies parents before the rows that follow them.
	order := c.PushTables(true)
	for _, n := range order {
		tb, _ := c.Table(n)
		for _, l := range tb.Follows {
			if p := slices.Index(order, l.Table); p < 0 || p > slices.Index(order, n) {
				t.Errorf("push order %v: %s before its parent %s", order, n, l.Table)
			}
		}
	}
}

func TestServerNames(t *testing.T) {
	c := Default()
	tb, ok := c.ServerTable("patient_registration_forms")
	if !ok || tb.Name != "registration_forms" {
		t.Fatalf("ServerTable(patient_registration_forms) = %v, %v", tb, ok)
	}
	if _, ok := c.ServerTable("registration_forms"); ok {
		t.Error("ServerTable(registration_forms) found a table")
	}
	if tb, ok := c.ServerTable("patients"); !ok || tb.Name != "patients" {
		t.Errorf("ServerTable(patients) = %v, %v", tb, ok)
	}
}

func TestPushTables(t *testing.T) {
	device := []string{
		"patients", "patient_additional_attributes", "visits", "events",
		"appointments", "prescriptions", "patient_vitals", "patient_problems",
		"prescription_items", "dispensing_records",
	}
	hub := append(slices.Clone(device), "clinic_departments", "drug_catalogue")
	c := Default()
	if got := c.PushTables(false); !slices.Equal(got, device) {
		t.Errorf("PushTables(false) = %v\nwant %v", got, device)
	}
	if got := c.PushTables(true); !slices.Equal(got, hub) {
		t.Errorf("PushTables(true) = %v\nwant %v", got, hub)
	}
	for _, n := range c.PushTables(true) {
		if tb, _ := c.Table(n); tb.Flow != Synced {
			t.Errorf("push table %s has flow %s", n, tb.Flow)
		}
	}
}

func TestServedTables(t *testing.T) {
	// ENTITIES_TO_PUSH_TO_MOBILE plus user_clinic_permissions and app_config.
	device := []string{
		"patients", "patient_additional_attributes", "clinics", "visits", "events",
		"event_forms", "registration_forms", "appointments", "prescriptions",
		"patient_vitals", "patient_problems", "clinic_departments", "drug_catalogue",
		"clinic_inventory", "dispensing_records", "prescription_items",
		"user_clinic_permissions", "app_config",
	}
	slices.Sort(device)
	hub := append(slices.Clone(device), "users")
	slices.Sort(hub)
	c := Default()
	if got := c.ServedTables(false); !slices.Equal(got, device) {
		t.Errorf("ServedTables(false) = %v\nwant %v", got, device)
	}
	if got := c.ServedTables(true); !slices.Equal(got, hub) {
		t.Errorf("ServedTables(true) = %v\nwant %v", got, hub)
	}
}

func TestNewCatalogRejects(t *testing.T) {
	col := func(name string) Column { return Column{Name: name, Type: String} }
	tbl := func(name string, cols ...Column) *Table {
		return &Table{Name: name, Flow: Synced, Columns: cols}
	}
	for _, tc := range []struct {
		name   string
		tables []*Table
		errSub string
	}{
		{"duplicate table", []*Table{tbl("a"), tbl("a")}, "defined twice"},
		{"duplicate column", []*Table{tbl("a", col("x"), col("x"))}, "defined twice"},
		{"duplicate server name", []*Table{tbl("a"), {Name: "b", ServerName: "a", Flow: Synced}}, "used twice"},
		{"upper-case table", []*Table{tbl("Patients")}, "invalid table name"},
		{"empty table name", []*Table{tbl("")}, "invalid table name"},
		{"table name with dash", []*Table{tbl("a-b")}, "invalid table name"},
		{"table name too long", []*Table{tbl(strings.Repeat("a", 64))}, "invalid table name"},
		{"bad server name", []*Table{{Name: "a", ServerName: "a b", Flow: Synced}}, "invalid server name"},
		{"bad column name", []*Table{tbl("a", col("x;"))}, "invalid column name"},
		{"reserved id", []*Table{tbl("a", col("id"))}, "invalid column name"},
		{"reserved _status", []*Table{tbl("a", col("_status"))}, "invalid column name"},
		{"reserved _changed", []*Table{tbl("a", col("_changed"))}, "invalid column name"},
		{"zero type", []*Table{tbl("a", Column{Name: "x"})}, "unknown type"},
		{"type out of range", []*Table{tbl("a", Column{Name: "x", Type: Decimal + 1})}, "unknown type"},
		{"zero flow", []*Table{{Name: "a"}}, "unknown flow"},
		{"unknown clinic column", []*Table{{Name: "a", Flow: Synced, ClinicColumn: "clinic_id"}}, "clinic column"},
		{"follows by an unknown column", []*Table{{Name: "p", Flow: Synced, ClinicColumn: "id"},
			{Name: "a", Flow: Synced, Follows: []Link{{Column: "p_id", Table: "p"}}}}, "not a column"},
		{"follows an unknown table", []*Table{{Name: "a", Flow: Synced, Columns: []Column{col("p_id")},
			Follows: []Link{{Column: "p_id", Table: "p"}}}}, "not a table"},
		{"follows an unscoped table", []*Table{tbl("p"), {Name: "a", Flow: Synced, Columns: []Column{col("p_id")},
			Follows: []Link{{Column: "p_id", Table: "p"}}}}, "no clinic column"},
		{"follows a follower", []*Table{{Name: "p", Flow: Synced, ClinicColumn: "id"},
			{Name: "b", Flow: Synced, Columns: []Column{col("p_id")}, Follows: []Link{{Column: "p_id", Table: "p"}}},
			{Name: "a", Flow: Synced, Columns: []Column{col("b_id")}, Follows: []Link{{Column: "b_id", Table: "b"}}}}, "no clinic column"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewCatalog(tc.tables...)
			if err == nil {
				t.Fatalf("NewCatalog accepted %s: %v", tc.name, c.Names())
			}
			if !strings.HasPrefix(err.Error(), "schema: ") || !strings.Contains(err.Error(), tc.errSub) {
				t.Errorf("error %q, want one containing %q", err, tc.errSub)
			}
		})
	}
}

func TestNewCatalogAccepts(t *testing.T) {
	c, err := NewCatalog(
		&Table{Name: "b", Flow: Local, Columns: []Column{{Name: "x", Type: JSON}}},
		&Table{Name: "a", ServerName: "server_a", Flow: Down, ClinicColumn: "id"},
	)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Names(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Names() = %v", got)
	}
	if tb, ok := c.Table("b"); !ok || tb.ServerName != "b" {
		t.Errorf("Table(b) = %+v, %v; want ServerName defaulted to b", tb, ok)
	}
	if tb, ok := c.ServerTable("server_a"); !ok || tb.Name != "a" {
		t.Errorf("ServerTable(server_a) = %v, %v", tb, ok)
	}
	if got := c.PushTables(true); len(got) != 0 {
		t.Errorf("PushTables on a foreign catalog = %v", got)
	}
	if got := c.ServedTables(false); !slices.Equal(got, []string{"a"}) {
		t.Errorf("ServedTables(false) = %v", got)
	}
}

func TestValidID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"0190b3a2-7c4e-7d1a-9f3b-2a4c5e6f7a8b", true},
		{"550e8400-e29b-41d4-a716-446655440000", true},
		{"x", true},
		{"abc_DEF.123-4", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{"", false},
		{"a/b", false},
		{"'x'", false},
		{"a b", false},
		{"..\\x", false},
		{"é", false},
	} {
		if got := ValidID(tc.id); got != tc.want {
			t.Errorf("ValidID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}

func TestParseType(t *testing.T) {
	for typ := String; typ <= Decimal; typ++ {
		got, err := ParseType(typ.String())
		if err != nil || got != typ {
			t.Errorf("ParseType(%q) = %v, %v", typ.String(), got, err)
		}
	}
	if _, err := ParseType("type(0)"); err == nil {
		t.Error("ParseType(type(0)) succeeded")
	}
}

// FuzzValidNameAndID checks the hand-written validators against the
// regular expressions that define them.
func FuzzValidNameAndID(f *testing.F) {
	nameRE := regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	idRE := regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,128}$`)
	for _, s := range []string{"", "a", "_x", "9a", "given_name", "Given", "a-b", "550e8400-e29b-41d4-a716-446655440000", "a/b", "é", strings.Repeat("a", 64), strings.Repeat("b", 129), "x\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidName(s), nameRE.MatchString(s); got != want {
			t.Errorf("ValidName(%q) = %v, regexp says %v", s, got, want)
		}
		if got, want := ValidID(s), idRE.MatchString(s); got != want {
			t.Errorf("ValidID(%q) = %v, regexp says %v", s, got, want)
		}
	})
}
