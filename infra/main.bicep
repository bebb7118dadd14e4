// One connector instance for one customer tenant: `azd up` deploys this and the code (azure.yaml).
// This file only wires the modules in ./modules; each module declares its resources directly.
targetScope = 'subscription'

metadata description = 'Entra ID Graph connector on Azure Functions (Flex Consumption, Python), per customer tenant.'

@description('Required. Name of the environment (azd environment name); names the resource group and, hashed, the resources.')
@minLength(1)
@maxLength(40)
param environmentName string

@description('Required. What the instance is for: the alert rules\' severities follow it (prod is higher than test, demo and dev) and telemetry carries it.')
@allowed([
  'test'
  'prod'
  'demo'
  'dev'
])
param environmentType string

@description('Required. Azure region of every resource (one that offers Flex Consumption).')
@metadata({ azd: { type: 'location' } })
param location string

@description('Required. The customer tenant the connector reads (its tenant ID or a verified domain); used in the connector configuration, reported as an output.')
param graphTenantId string

@description('Optional. Application (client) ID of the app registration the connector uses for Graph; empty with the managed_identity credential kind (the managed identity is the Graph client).')
param graphClientId string = ''

@description('Optional. How the connector authenticates to Graph: the app\'s managed identity (no secret), or an app registration with a client secret or a certificate kept in Key Vault.')
@allowed([
  'managed_identity'
  'client_secret'
  'certificate'
])
param credentialKind string = 'managed_identity'

@description('Optional. NCRONTAB (six fields, seconds first) of the scheduler tick that queues due tasks.')
param tickSchedule string = '0 * * * * *'

@description('Optional. Object ID of the person or group running the deployment (azd sets AZURE_PRINCIPAL_ID): given data roles to store the configuration, queue runs, read output and put the Graph secret into Key Vault.')
param principalId string = ''

@description('Optional. Type of principalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Optional. Email addresses the alerts go to (an action group is created when any is given).')
param alertEmailAddresses array = []

@description('Optional. Hours within which each task must have a successful run, by task name; other tasks use defaultRunWindowHours.')
param taskRunWindowHours object = {}

@description('Optional. Hours within which a task without an entry in taskRunWindowHours must have a successful run (at most 48).')
@minValue(1)
@maxValue(48)
param defaultRunWindowHours int = 26

@description('Optional. Days after which run output is deleted from the extracts container.')
@minValue(1)
param extractsRetentionDays int = 90

@description('Optional. Replication of the storage account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSkuName string = 'Standard_ZRS'

@description('Optional. Tags of every resource.')
param tags object = {}

@description('Optional. Application (client) ID of the Microsoft Entra app registration administrators sign in to the management page (/api/manage) with; it defines the Connector.Administrator app role, which Bicep cannot create (README, Deploy). Empty: App Service authentication is not configured and the page refuses every request; automation uses /api/mgmt with the admin key either way.')
param adminClientId string = ''

@description('Optional. Whether the admin import may store secret values in the Key Vault: the app\'s identity then gets Key Vault Secrets Officer (set secrets) instead of Key Vault Secrets User (read them). Off: an import that carries secret values is refused by Key Vault; imports of references only work either way.')
param adminImportWritesSecrets bool = false

@description('Optional. The function key Graph\'s change notifications carry (azd: NOTIFICATION_FUNCTION_KEY): stored in Key Vault before the app starts, and registered on the app by azure.yaml\'s postdeploy hook. Empty: change notifications need the manual step in the README.')
@secure()
param notificationFunctionKey string = ''

// Names the connector's settings model uses by default (shared/settings.py); set below as app settings.
var extractsContainerName = 'extracts'
var leasesContainerName = 'task-leases'
var runsQueueName = 'task-runs'
var configTableName = 'connectorconfig'
var historyTableName = 'runhistory'
var stateTableName = 'taskstate'
var idempotencyTableName = 'activityidempotency'
var usageTableName = 'activityusage'

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var allTags = union(tags, { 'azd-env-name': environmentName, 'environment-type': environmentType })
var functionAppName = 'func-${environmentName}-${resourceToken}'
var deploymentContainerName = 'app-package-${take(resourceToken, 12)}'
var notificationKeySecretName = 'notification-function-key'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: allTags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${environmentName}-${resourceToken}'
    location: location
    tags: allTags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    workspaceName: 'log-${environmentName}-${resourceToken}'
    applicationInsightsName: 'appi-${environmentName}-${resourceToken}'
    location: location
    tags: allTags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    skuName: storageSkuName
    extractsContainerName: extractsContainerName
    leasesContainerName: leasesContainerName
    deploymentContainerName: deploymentContainerName
    tableNames: [configTableName, historyTableName, stateTableName, idempotencyTableName, usageTableName]
    runsQueueName: runsQueueName
    extractsRetentionDays: extractsRetentionDays
    tags: allTags
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: allTags
    notificationKeySecretName: notificationKeySecretName
    notificationFunctionKey: notificationFunctionKey
  }
}

// The app's identity: storage data (host and connector), telemetry ingestion, secrets: reading them, or
// also writing them where the admin import is to store secret values (least privilege otherwise). The
// deployer: storage data to store the configuration and read output, and Key Vault to put the Graph secret
// and the notification key in.
var appKeyVaultRole = adminImportWritesSecrets ? 'Key Vault Secrets Officer' : 'Key Vault Secrets User'
var appRoles = [
  'Storage Blob Data Owner'
  'Storage Queue Data Contributor'
  'Storage Table Data Contributor'
  'Monitoring Metrics Publisher'
  appKeyVaultRole
]
var deployerRoles = [
  'Storage Blob Data Contributor'
  'Storage Queue Data Contributor'
  'Storage Table Data Contributor'
  'Key Vault Secrets Officer'
]

module roles 'modules/roles.bicep' = {
  name: 'roles'
  scope: rg
  params: {
    appPrincipalId: identity.outputs.PRINCIPAL_ID
    appRoleNames: appRoles
    deployerPrincipalId: principalId
    deployerPrincipalType: principalType
    deployerRoleNames: deployerRoles
  }
}

// The Function App's app settings: the Functions host's own, then exactly the names of the connector's
// settings model (shared/settings.py, those set in Azure); tests/infra checks the agreement.
var hostSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.CLIENT_ID};Authorization=AAD'
}
var connectorSettings = {
  AzureWebJobsStorage__accountName: storage.outputs.NAME
  AzureWebJobsStorage__blobServiceUri: storage.outputs.BLOB_ENDPOINT
  AzureWebJobsStorage__queueServiceUri: storage.outputs.QUEUE_ENDPOINT
  AzureWebJobsStorage__tableServiceUri: storage.outputs.TABLE_ENDPOINT
  AzureWebJobsStorage__clientId: identity.outputs.CLIENT_ID
  EXTRACTS_CONTAINER: extractsContainerName
  LEASES_CONTAINER: leasesContainerName
  RUNS_QUEUE: runsQueueName
  CONFIG_TABLE: configTableName
  HISTORY_TABLE: historyTableName
  STATE_TABLE: stateTableName
  ACTIVITY_IDEMPOTENCY_TABLE: idempotencyTableName
  ACTIVITY_USAGE_TABLE: usageTableName
  TICK_SCHEDULE: tickSchedule
  CREDENTIAL_CHECK_SCHEDULE: '0 0 6 * * *'
  RUN_DEADLINE_SECONDS: '3600'
  LEASE_SECONDS: '60'
  GRAPH_CONCURRENCY: '8'
  INTUNE_REQUESTS_PER_WINDOW: '2000'
  INTUNE_WINDOW_SECONDS: '20'
  BLOCK_SIZE_BYTES: '1048576'
  GRAPH_BACKOFF_SECONDS: '1'
  CONNECTOR_CA_BUNDLE: ''
  AZURE_CLIENT_ID: identity.outputs.CLIENT_ID
  ENVIRONMENT_TYPE: environmentType
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.APPLICATION_INSIGHTS_CONNECTION_STRING
  SUBSCRIPTIONS_SCHEDULE: '0 */10 * * * *'
  SUBSCRIPTION_LIFETIME_MINUTES: '4320'
  // A Key Vault reference the platform resolves with the app's identity; the secret is set after deployment
  // (README, Deploy): https://learn.microsoft.com/azure/app-service/app-service-key-vault-references
  NOTIFICATION_FUNCTION_KEY: '@Microsoft.KeyVault(VaultName=${keyVault.outputs.NAME};SecretName=${notificationKeySecretName})'
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  dependsOn: [
    roles
  ]
  params: {
    name: functionAppName
    planName: 'plan-${environmentName}-${resourceToken}'
    location: location
    identityResourceId: identity.outputs.RESOURCE_ID
    blobEndpoint: storage.outputs.BLOB_ENDPOINT
    deploymentContainerName: deploymentContainerName
    appSettings: union(hostSettings, connectorSettings)
    adminClientId: adminClientId
    tags: allTags
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    namePrefix: environmentName
    location: location
    environmentType: environmentType
    applicationInsightsResourceId: monitoring.outputs.APPLICATION_INSIGHTS_RESOURCE_ID
    emailAddresses: alertEmailAddresses
    taskRunWindowHours: taskRunWindowHours
    defaultRunWindowHours: defaultRunWindowHours
    tags: allTags
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    displayName: 'Graph connector (${environmentName}, ${environmentType})'
    location: location
    applicationInsightsResourceId: monitoring.outputs.APPLICATION_INSIGHTS_RESOURCE_ID
    tags: allTags
  }
}

@description('The resource group of the instance.')
output AZURE_RESOURCE_GROUP string = rg.name

@description('The Azure region.')
output AZURE_LOCATION string = location

@description('The tenant the resources are deployed in.')
output AZURE_TENANT_ID string = tenant().tenantId

@description('The Function App\'s name.')
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.NAME

@description('The Function App\'s URL; the management page is at /api/manage/, and the admin app registration\'s redirect URI is /.auth/login/aad/callback under it.')
output AZURE_FUNCTION_APP_URL string = 'https://${functionApp.outputs.DEFAULT_HOST_NAME}'

@description('Client ID of the app\'s managed identity: the Graph client with the managed_identity credential kind.')
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.CLIENT_ID

@description('Object ID of the app\'s managed identity: the principal Graph application permissions are granted to with the managed_identity credential kind.')
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.PRINCIPAL_ID

@description('The storage account (identity-based access only).')
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.NAME

@description('Key Vault URI for the Graph secret or certificate and the change-notification function key.')
output AZURE_KEY_VAULT_URI string = keyVault.outputs.URI

@description('The environment type the alert severities follow.')
output ENVIRONMENT_TYPE string = environmentType

@description('The customer tenant the connector reads.')
output GRAPH_TENANT_ID string = graphTenantId

@description('The Graph client: the app registration, or the managed identity with the managed_identity credential kind.')
output GRAPH_CLIENT_ID string = credentialKind == 'managed_identity' ? identity.outputs.CLIENT_ID : graphClientId

@description('How the connector authenticates to Graph.')
output GRAPH_CREDENTIAL_KIND string = credentialKind
