// Parameters of one connector instance. azd fills the AZURE_* values from its environment
// (`azd env set NAME VALUE` for the others); for a plain deployment, replace the defaults here:
//   az deployment sub create -l <region> -f infra/main.bicep -p infra/main.bicepparam
using './main.bicep'

param environmentName = readEnvironmentVariable('AZURE_ENV_NAME', 'contoso-connector-test')
param location = readEnvironmentVariable('AZURE_LOCATION', 'swedencentral')
param environmentType = readEnvironmentVariable('ENVIRONMENT_TYPE', 'test')
param principalId = readEnvironmentVariable('AZURE_PRINCIPAL_ID', '')

// The customer tenant and how the connector signs in to Graph there.
param graphTenantId = readEnvironmentVariable('GRAPH_TENANT_ID', 'contoso.onmicrosoft.com')
param credentialKind = readEnvironmentVariable('GRAPH_CREDENTIAL_KIND', 'managed_identity')
param graphClientId = readEnvironmentVariable('GRAPH_CLIENT_ID', '')

// Administrators' sign-in to the management page (README, Deploy: the app registration and its
// Connector.Administrator app role); empty: not configured. Secret values in admin imports: off by default.
param adminClientId = readEnvironmentVariable('ADMIN_CLIENT_ID', '')
param adminImportWritesSecrets = bool(readEnvironmentVariable('ADMIN_IMPORT_WRITES_SECRETS', 'false'))

// The change-notification function key, generated once per environment (README, Deploy, step 5).
param notificationFunctionKey = readEnvironmentVariable('NOTIFICATION_FUNCTION_KEY', '')

param tickSchedule = '0 * * * * *'
param alertEmailAddresses = []
param taskRunWindowHours = {
  'contoso-nightly-full': 26
}
