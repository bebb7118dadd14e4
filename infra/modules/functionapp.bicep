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

@description('Optional. Application (client) ID of the Microsoft Entra app registration administrators sign in to the management page with (it defines the Connector.Administrator app role; README, Deploy). Empty: App Service authentication is not configured, and the page\'s route refuses every request.')
param adminClientId string = ''

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

// App Service authentication (Microsoft Entra ID) for the management page, /api/manage/{*path}. It is not
// required globally: an unauthenticated request passes through (AllowAnonymous), so the function-key routes
// (activities, change notifications, /api/mgmt with the admin key) work as before, since Functions' key
// levels and App Service authentication do not combine on one route (azure-functions-host#11394). The page's
// route checks the signed-in user itself: it reads X-MS-CLIENT-PRINCIPAL, which the platform sets and strips
// from clients' requests, trusts it only where the platform sets WEBSITE_AUTH_ENABLED=True, and requires the
// Connector.Administrator app role (shared/admin/access.py). No client secret: sign-in uses the OpenID
// Connect implicit flow, so the app registration issues ID tokens, which carry the user's app roles. No token
// store: the app reads only the principal header, not the provider's tokens.
// https://learn.microsoft.com/azure/app-service/configure-authentication-provider-aad
// https://learn.microsoft.com/azure/app-service/configure-authentication-user-identities
resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(adminClientId)) {
  // checkov:skip=CKV_AZURE_13: checkov reads the V1 authsettings schema (properties.enabled); this authsettingsV2 config turns authentication on with platform.enabled below.
  // checkov:skip=CKV_AZURE_63: HTTP logging is a setting of the site's web config, not of this authsettingsV2 config; checkov applies its site checks to every sites/config, and the app logs to Application Insights.
  // checkov:skip=CKV_AZURE_65: Detailed error messages are a setting of the site's web config, not of this authsettingsV2 config; the app logs to Application Insights.
  // checkov:skip=CKV_AZURE_66: Failed request tracing is a setting of the site's web config, not of this authsettingsV2 config; the app logs to Application Insights.
  // checkov:skip=CKV_AZURE_80: The .NET Framework version is a setting of the site's web config, not of this authsettingsV2 config; the app runs Python.
  // checkov:skip=CKV_AZURE_88: Azure Files mounts are a setting of the site, not of this authsettingsV2 config; Flex Consumption deploys from blob storage.
  // checkov:skip=CKV_AZURE_222: Public network access is a property of the site (skipped there, with its reason), not of this authsettingsV2 config.
  parent: app
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: adminClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          // The client id is always an allowed audience (ID tokens of the sign-in); this adds the app
          // registration's default Application ID URI, for access tokens requested for it.
          allowedAudiences: [
            'api://${adminClientId}'
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
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
