// The Function App on the Flex Consumption plan (Linux, Python), running as the user-assigned identity.
// Flex Consumption takes the runtime, scale and deployment source from functionAppConfig rather than from
// app settings (FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION are not set there).
// https://learn.microsoft.com/azure/azure-functions/flex-consumption-how-to
metadata description = 'Flex Consumption plan and Function App (Python) with a user-assigned identity.'

@description('Required. Name of the Function App.')
param name string

@description('Required. Name of the Flex Consumption plan.')
param planName string

@description('Optional. Location of the resources.')
param location string = resourceGroup().location

@description('Required. Resource ID of the user-assigned managed identity the app runs as.')
param identityResourceId string

@description('Required. Blob endpoint of the storage account holding the deployment container.')
param blobEndpoint string

@description('Required. Container Flex Consumption deploys the app package from.')
param deploymentContainerName string

@description('Required. The app settings (the connector\'s settings model plus the Functions host\'s own).')
param appSettings object

@description('Optional. Python version of the app.')
@allowed([
  '3.11'
])
param pythonVersion string = '3.11'

@description('Optional. Most instances the app scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 10

@description('Optional. Memory of each instance, in MB.')
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Optional. Tags of the resources (the app also gets azd-service-name).')
param tags object = {}

@description('Optional. The azd service name in azure.yaml that deploys the code to this app.')
param serviceName string = 'connector'

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Zone redundancy of a Flex Consumption plan depends on the region; a zone outage costs a scheduled, checkpointed run a redelivery, not data.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: Public network access: the timer and queue triggers need none, but azd deploys and the platform's HTTP calls arrive over it; no virtual network in this template.
  // checkov:skip=CKV_AZURE_17: Client certificates: HTTP endpoints authenticate with function keys or Microsoft Entra ID, not TLS client certificates.
  // checkov:skip=CKV_AZURE_212: Minimum instances: Flex Consumption scales to zero and starts instances on demand; the timer and queue triggers tolerate a cold start.
  // checkov:skip=CKV_AZURE_213: Health check: the app serves no HTTP endpoint to probe for the timer and queue triggers; the platform manages Flex Consumption instances.
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityResourceId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: identityResourceId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for setting in items(appSettings): { name: setting.key, value: string(setting.value) }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityResourceId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// No publishing with user names and passwords: azd and CI deploy with Microsoft Entra ID.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

@description('The resource ID of the Function App.')
output RESOURCE_ID string = app.id

@description('The name of the Function App.')
output NAME string = app.name

@description('The default host name of the Function App.')
output DEFAULT_HOST_NAME string = app.properties.defaultHostName
