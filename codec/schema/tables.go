package schema

import (
	"slices"
	"sync"
)

// Default returns the Hikma Health catalog: the WatermelonDB schema v9
// tables (reference §4.1) plus the server-side columns that matter on the
// wire. It is built once; callers must not modify it.
func Default() *Catalog { return defaultCatalog() }

var defaultCatalog = sync.OnceValue(func() *Catalog {
	tables := defaultTables()
	for _, t := range tables {
		if t.Flow == Synced {
			addServerColumns(t)
		}
	}
	c, err := NewCatalog(tables...)
	if err != nil {
		panic("schema: default catalog is invalid: " + err.Error())
	}
	return c
})

// req and opt build a required and an optional column.
func req(name string, t Type) Column { return Column{Name: name, Type: t} }
func opt(name string, t Type) Column { return Column{Name: name, Type: t, Optional: true} }

// addServerColumns appends last_modified and server_created_at to a synced
// table that does not declare them: the Hikma server sends both on every
// row (reference §1.3). Declared ones keep their mobile optionality.
func addServerColumns(t *Table) {
	for _, name := range []string{"last_modified", "server_created_at"} {
		if !slices.ContainsFunc(t.Columns, func(c Column) bool { return c.Name == name }) {
			t.Columns = append(t.Columns, opt(name, Timestamp))
		}
	}
}

// patientVisit links a clinical record to the patient and the visit it
// belongs to: it is in the scope of their clinics (fsm.Scope).
var patientVisit = []Link{{Column: "patient_id", Table: "patients"}, {Column: "visit_id", Table: "visits"}}

func defaultTables() []*Table {
	return []*Table{
		{
			Name: "patients", Flow: Synced, ClinicColumn: "primary_clinic_id",
			Columns: []Column{
				req("given_name", String),
				req("surname", String),
				req("date_of_birth", Date),
				req("citizenship", String),
				req("hometown", String),
				req("phone", String),
				req("sex", String),
				opt("camp", String),
				req("additional_data", JSON),
				req("metadata", JSON),
				opt("photo_url", String),
				req("is_deleted", Bool),
				opt("deleted_at", Timestamp),
				req("created_at", Timestamp),
				req("updated_at", Timestamp),
				req("government_id", String),
				req("external_patient_id", String),
				opt("primary_clinic_id", String),
				opt("last_modified_by", String),
			},
		},
		{
			// The cloud serves users only to hubs, whole rows included
			// (reference §1.3).
			Name: "users", Flow: Synced, ClinicColumn: "clinic_id", HubOnly: true,
			Columns: []Column{
				req("clinic_id", String),
				req("name", String),
				req("role", String),
				req("email", String),
				req("created_at", Timestamp),
				req("updated_at", Timestamp),
				req("is_deleted", Bool),
				opt("deleted_at", Timestamp),
				// Server-side only; never sent to devices.
				{Name: "hashed_password", Type: String, Optional: true, Secret: true},
			},
		},
		{
			Name: "clinics", Flow: Synced, ClinicColumn: "id",
			Columns: []Column{
				req("name", String),
				req("updated_at", Timestamp),
				req("created_at", Timestamp),
				req("is_deleted", Bool),
				opt("deleted_at", Timestamp),
				req("is_archived", Bool),
				// Server-side columns; attributes is a Postgres text[],
				// which arrives as a JSON array.
				opt("address", String),
				opt("attributes", JSON),
				opt("metadata", JSON),
			},
		},
		{
			Name: "events", Flow: Synced, Follows: patientVisit,
			Columns: []Column{
				req("patient_id", String),
				req("form_id", String),
				req("visit_id", String),
				req("event_type", String),
				req("form_data", JSON),
				req("metadata", JSON),
				req("is_deleted", Bool),
				opt("deleted_at", Timestamp),
				req("created_at", Timestamp),
				req("updated_at", Timestamp),
				req("recorded_by_user_id", String),
			},
		},
		{
			// clinic_ids is a JSON array of clinic ids; null or [] means
			// every clinic, so hub scoping is an overlap test, not an
			// equality (reference §1.3).
			Name: "event_forms", Flow: Synced, ClinicColumn: "clinic_ids",
			Columns: []Column{
				req("name", String),
				req("description", String),
				req("language", String),
				req("is_editable", Bool),
				req("is_snapshot_form", Bool),
				req("form_fields", JSON),
				req("metadata", JSON),
				req("is_deleted", Bool),
				opt("deleted_at", Timestamp),
				req("created_at", Timestamp),
				req("updated_at", Timestamp),
				opt("clinic_ids", JSON), // Hikma sends null for "all clinics"
				opt("translations", JSON),
			},
		},
		{
			Name: "visits", Flow: Synced, ClinicColumn: "clinic_id",
			Columns: []Column{
				req("patient_id", String),
				req("clinic_id", String),
				req("provider_id", String),
				req("provider_name", String),
				req("check_in_timestamp", Timestamp),
				req("metadata", JSON),
				req("is_deleted", Bool),
				opt("deleted_at", Timestamp),
				req("created_at", Timestamp),
				req("updated_at", Timestamp),
			},
		},
		{
			Name: "registration_forms", ServerName: "patient_registration_forms",
			Flow: Synced, ClinicColumn: "clinic_id",
			Columns: []Column{
				req("name", String),
				req("fields", JSON),
				req("metadata", JSON),
				req("is_deleted", Bool),
				opt("deleted_at", Timestamp),
				req("created_at", Timestamp),
				req("updated_at", Timestamp),
				// Server-side only; the mobile schema has no clinic_id.
				opt("clinic_id", String),
			},
		},
		{
			Name: "patient_additional_attributes", Flow: Synced,
			Follows: []Link{{Column: "patient_id", Table: "patients"}},
			Columns: []Column{
				req("patient_id", String),
				req("attribute_id", String),
				req("attribute", String),
				opt("number_value", Number),
				opt("string_value", String),
				opt("date_value", Timestamp),
				opt("boolean_value", Bool),
				req("metadata", JSON),
				req("is_deleted", Bool),
				req("created_at", Timestamp),
				req("updated_at", Timestamp),
				req("last_modified", Timestamp),
				req("server_created_at", Timestamp),
				opt("deleted_at", Timestamp),
			},
		},
		{
			Name: "appointments", Flow: Synced, ClinicColumn: "clinic_id",
			Columns: []Column{
				opt("provider_id", String),
				req("clinic_id", String),
				req("patient_id", String),
				req("user_id", String),
				req("current_visit_id", String),
				opt("fulfilled_visit_id", String),
				req("timestamp", Timestamp),
				opt("duration", Number),
				req("reason", String),
				req("notes", String),
				req("is_walk_in", Bool),
				req("departments", JSON),
				req("status", String),
				req("metadata", JSON),
				req("is_deleted", Bool),
				req("created_at", Timestamp),
				req("updated_at", Timestamp),
				opt("deleted_at", Timestamp),
			},
		},
		{
			// A prescription without a pickup clinic follows its patient
			// and visit.
			Name: "prescriptions", Flow: Synced, ClinicColumn: "pickup_clinic_id", Follows: patientVisit,
			Columns: []Column{
				req("patient_id", String),
				req("provider_id", String),
				opt("filled_by", String),
				opt("pickup_clinic_id", String),
				opt("visit_id", String),
				req("priority", String),
				req("expiration_date", Timestamp),
				req("prescribed_at", Timestamp),
				opt("filled_at", Timestamp),
				req("status", String),
				req("items", JSON),
				req("notes", String),
				req("metadata", JSON),
				req("is_deleted", Bool),
				req("created_at", Timestamp),
				req("updated_at", Timestamp),
				opt("deleted_at", Timestamp),
			},
		},
		{
			// The server stores bmi, height_cm, weight_kg,
			// waist_circumference_cm, oxygen_saturation and
			// temperature_celsius as numeric and sends them as strings;
			// the mobile type is number, so they are Number here.
			Name: "patient_vitals", Flow: Synced, Follows: patientVisit,
			Columns: []Column{
				req("patient_id", String),
				opt("visit_id", String),
				req("timestamp", Timestamp),
				opt("systolic_bp", Number),
				opt("diastolic_bp", Number),
				opt("bp_position", String),
				opt("height_cm", Number),
				opt("weight_kg", Number),
				opt("bmi", Number),
				opt("waist_circumference_cm", Number),
				opt("heart_rate", Number),
				opt("pulse_rate", Number),
				opt("oxygen_saturation", Number),
				opt("respiratory_rate", Number),
				opt("temperature_celsius", Number),
				opt("pain_level", Number),
				opt("recorded_by_user_id", String),
				req("metadata", JSON),
				req("is_deleted", Bool),
				req("created_at", Timestamp),
				req("updated_at", Timestamp),
				opt("deleted_at", Timestamp),
				opt("event_id", String),
			},
		},
		{
			Name: "patient_problems", Flow: Synced, Follows: patientVisit,
			Columns: []Column{
				req("patient_id", String),
				opt("visit_id", String),
				req("problem_code_system", String),
				req("problem_code", String),
				req("problem_label", String),
				req("clinical_status", String),
				req("verification_status", String),
				opt("severity_score", Number),
				opt("onset_date", Timestamp),
				opt("end_date", Timestamp),
				opt("recorded_by_user_id", String),
				req("metadata", JSON),
				req("is_deleted", Bool),
				req("created_at", Timestamp),
				req("updated_at", Timestamp),
				req("last_modified", Timestamp),
				req("server_created_at", Timestamp),
				opt("deleted_at", Timestamp),
			},
		},
		{
			Name: "clinic_departments", Flow: Synced, ClinicColumn: "clinic_id",
			Columns: []Column{
				req("clinic_id", String),
				req("name", String),
				opt("code", String),
				opt("description", String),
				req("status", String),
				req("can_dispense_medications", Bool),
				req("can_perform_labs", Bool),
				req("can_perform_imaging", Bool),
				req("additional_capabilities", JSON),
				req("metadata", JSON),
				req("is_deleted", Bool),
				req("created_at", Timestamp),
				req("updated_at", Timestamp),
				req("last_modified", Timestamp),
				req("server_created_at", Timestamp),
				opt("deleted_at", Timestamp),
			},
		},
		{
			Name: "drug_catalogue", Flow: Synced,
			Columns: []Column{
				opt("barcode", String),
				req("generic_name", String),
				opt("brand_name", String),
				req("form", String),
				req("route", String),
				req("dosage_quantity", Decimal),
				req("dosage_units", String),
				opt("manufacturer", String),
				req("sale_price", Decimal),
				opt("sale_currency", String),
				req("min_stock_level", Number),
				opt("max_stock_level", Number),
				req("is_controlled", Bool),
				req("requires_refrigeration", Bool),
				req("is_active", Bool),
				opt("notes", String),
				opt("recorded_by_user_id", String),
				req("metadata", JSON),
				req("is_deleted", Bool),
				opt("deleted_at", Timestamp),
				req("last_modified", Timestamp),
				opt("server_created_at", Timestamp),
				req("created_at", Timestamp),
				req("updated_at", Timestamp),
			},
		},
		{
			// The reference gives no type for quantity_available and
			// reserved_quantity; they are counts, so Number (as in the
			// mobile schema.ts).
			Name: "clinic_inventory", Flow: Synced, ClinicColumn: "clinic_id",
			Columns: []Column{
				req("clinic_id", String),
				req("drug_id", String),
				req("batch_id", String),
				req("quantity_available", Number),
				req("reserved_quantity", Number),
				opt("last_counted_at", Timestamp),
				opt("recorded_by_user_id", String),
				req("metadata", JSON),
				req("is_deleted", Bool),
				opt("deleted_at", Timestamp),
				req("last_modified", Timestamp),
				opt("server_created_at", Timestamp),
				req("created_at", Timestamp),
				req("updated_at", Timestamp),
				req("batch_number", String),
				req("batch_expiry_date", Timestamp),
			},
		},
		{
			// The reference gives no type for the quantity and refill
			// columns; they are counts, so Number (as in schema.ts).
			Name: "prescription_items", Flow: Synced, ClinicColumn: "clinic_id",
			Columns: []Column{
				req("prescription_id", String),
				req("patient_id", String),
				req("drug_id", String),
				req("clinic_id", String),
				req("dosage_instructions", String),
				req("quantity_prescribed", Number),
				req("quantity_dispensed", Number),
				req("refills_authorized", Number),
				req("refills_used", Number),
				req("item_status", String),
				opt("notes", String),
				req("created_at", Timestamp),
				req("updated_at", Timestamp),
				opt("recorded_by_user_id", String),
				req("metadata", JSON),
				req("is_deleted", Bool),
				opt("deleted_at", Timestamp),
				req("last_modified", Timestamp),
				opt("server_created_at", Timestamp),
			},
		},
		{
			// quantity_dispensed and days_supply are counts: Number.
			Name: "dispensing_records", Flow: Synced, ClinicColumn: "clinic_id",
			Columns: []Column{
				req("clinic_id", String),
				req("drug_id", String),
				opt("batch_id", String),
				opt("prescription_item_id", String),
				req("patient_id", String),
				req("quantity_dispensed", Number),
				opt("dosage_instructions", String),
				opt("days_supply", Number),
				req("dispensed_by", String),
				req("dispensed_at", Timestamp),
				opt("recorded_by_user_id", String),
				req("metadata", JSON),
				req("is_deleted", Bool),
				opt("deleted_at", Timestamp),
				req("last_modified", Timestamp),
				opt("server_created_at", Timestamp),
				req("created_at", Timestamp),
				req("updated_at", Timestamp),
			},
		},
		{
			// No soft delete and no server_created_at on the server.
			Name: "user_clinic_permissions", Flow: Down, ClinicColumn: "clinic_id",
			Columns: []Column{
				req("user_id", String),
				req("clinic_id", String),
				req("can_register_patients", Bool),
				req("can_view_history", Bool),
				req("can_edit_records", Bool),
				req("can_delete_records", Bool),
				req("is_clinic_admin", Bool),
				opt("created_by", String),
				opt("last_modified_by", String),
				req("created_at", Timestamp),
				req("updated_at", Timestamp),
				req("can_edit_other_provider_event", Bool),
				req("can_download_patient_reports", Bool),
				req("can_prescribe_medications", Bool),
				req("can_dispense_medications", Bool),
				req("can_delete_patient_visits", Bool),
				req("can_delete_patient_records", Bool),
			},
		},
		{
			// value is JSON or a scalar depending on data_type, so it is
			// kept as String.
			Name: "app_config", Flow: Down,
			Columns: []Column{
				req("namespace", String),
				req("key", String),
				req("value", String),
				req("data_type", String),
				req("created_at", Timestamp),
				req("updated_at", Timestamp),
				req("last_modified", Timestamp),
				opt("last_modified_by", String),
				opt("display_name", String),
			},
		},
		{
			// metadata is not marked JSON in the reference (nor commented
			// in schema.ts), so it stays String and is kept as written.
			Name: "event_logs", Flow: Local,
			Columns: []Column{
				req("transaction_id", String),
				req("action_type", String),
				req("table_name", String),
				req("row_id", String),
				req("changes", JSON),
				req("device_id", String),
				req("app_id", String),
				req("user_id", String),
				opt("ip_address", String),
				req("hash", String),
				opt("metadata", String),
				req("synced", Bool),
				req("created_at", Timestamp),
			},
		},
		{
			Name: "peers", Flow: Local,
			Columns: []Column{
				req("peer_id", String),
				req("name", String),
				opt("ip_address", String),
				opt("port", Number),
				req("public_key", String),
				opt("last_synced_at", Timestamp),
				req("peer_type", String),
				req("is_leader", Bool),
				req("status", String),
				req("protocol_version", String),
				opt("metadata", JSON),
				req("created_at", Timestamp),
				req("updated_at", Timestamp),
			},
		},
	}
}

// pushOrder is the order in which a cloud applies a push (reference §1.4,
// ENTITIES_TO_PULL_FROM_MOBILE): parents before children.
// prescription_items comes before dispensing_records, which refers to it;
// the [S] server had them the other way round, newer servers fixed it.
var pushOrder = []string{
	"patients",
	"patient_additional_attributes",
	"visits",
	"events",
	"appointments",
	"prescriptions",
	"patient_vitals",
	"patient_problems",
	"prescription_items",
	"dispensing_records",
}

// hubPushExtra is what a cloud also accepts from a hub
// (ENTITIES_TO_PULL_FROM_HUB; device_pin_codes is not in the catalog).
var hubPushExtra = []string{"clinic_departments", "drug_catalogue"}

// PushTables returns the mobile names of the tables a cloud accepts in a
// push, in the order it applies them. Hubs may push more than devices.
// Tables absent from c are left out.
func (c *Catalog) PushTables(hub bool) []string {
	names := pushOrder
	if hub {
		names = slices.Concat(pushOrder, hubPushExtra)
	}
	var out []string
	for _, n := range names {
		if _, ok := c.tables[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// ServedTables returns the mobile names of the tables served on pull,
// sorted: every Synced and Down table, HubOnly ones only to hubs
// (reference §1.3).
func (c *Catalog) ServedTables(hub bool) []string {
	var out []string
	for _, n := range c.names {
		t := c.tables[n]
		if (t.Flow == Synced || t.Flow == Down) && (hub || !t.HubOnly) {
			out = append(out, n)
		}
	}
	return out
}
