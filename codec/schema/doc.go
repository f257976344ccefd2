// Package schema describes the tables clinicsync stores and syncs: their
// columns, the logical type of each column, and which way their rows
// travel. It is pure data; it does no I/O and has no clock.
//
// # Catalogs
//
// A Catalog is a checked, immutable set of Tables, looked up by mobile
// (WatermelonDB) name with Catalog.Table or by Hikma server name with
// Catalog.ServerTable. The two differ only for registration_forms, which
// the server calls patient_registration_forms. NewCatalog rejects
// duplicate tables or columns, names that are not lower-case snake_case,
// and the reserved column names id, _status and _changed (every row has
// an implicit id; the other two are WatermelonDB bookkeeping and never
// stored as columns).
//
// Default returns the Hikma Health catalog: the 21 tables of the mobile
// schema v9, plus the server-side columns that arrive on the wire
// (last_modified and server_created_at on every synced table,
// users.hashed_password, clinics.address/attributes/metadata,
// patient_registration_forms.clinic_id).
//
// # Types and the wire
//
// Each column has a Type, which says how a value is normalized on input
// and what it looks like on output:
//
//   - String: text.
//   - Number: a JS number (counts, vitals, ports).
//   - Bool: true/false; 0 and 1 are accepted on input because hubs and
//     old deployments store booleans as integers.
//   - JSON: JSON text kept in a string column on the device; the cloud
//     sends jsonb as a JSON object or array.
//   - Timestamp: epoch milliseconds. The cloud sends these as ISO-8601
//     strings; devices and hubs use numbers.
//   - Date: a civil date "YYYY-MM-DD" (patients.date_of_birth only).
//   - Decimal: a number carried as a string ("170.00"), as node-pg renders
//     Postgres numeric (drug_catalogue dosage_quantity and sale_price).
//
// Optional columns may be null. Secret columns (users.hashed_password)
// are served only to authenticated hubs, never to devices.
//
// # Flows
//
// A table's Flow says where its rows go:
//
//   - Synced tables are pulled and pushed. Catalog.PushTables lists those
//     a cloud accepts from a device or a hub, in the order it applies them;
//     the cloud ignores any other key in a push.
//   - Down tables (user_clinic_permissions, app_config) are served on pull
//     but never accepted in a push.
//   - Local tables (event_logs, peers) never leave the device.
//
// Catalog.ServedTables lists what a pull returns. HubOnly tables (users)
// are served only to hubs. ClinicColumn names the column hub clinic
// scoping matches against; for event_forms it is clinic_ids, a JSON array
// in which null or [] means every clinic. Follows lists the links (a
// column holding a parent's id) of a row without a clinic of its own:
// events, patient_vitals and patient_problems follow their patient and
// visit, patient_additional_attributes its patient, and a prescription
// without a pickup clinic its patient and visit. Tables with neither
// (drug_catalogue, app_config) are global. fsm.Scope holds the rule.
//
// # Caveats
//
// Column types follow the mobile schema, not Postgres: patient_vitals
// columns such as height_cm are numeric on the server and arrive as
// strings, but are Number here, so decoders must accept numeric strings
// for Number columns. Tables built for NewCatalog are modified by it
// (ServerName defaults to Name) and must not be changed afterwards.
package schema
