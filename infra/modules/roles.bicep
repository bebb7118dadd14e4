// Every role assignment of the deployment, in one loop: roles by name, assignment names deterministic
// (guid of scope, principal and role), so a redeployment finds the same assignments.
// Scope: the resource group, which holds one connector instance and nothing else (storage account, vault,
// Application Insights), so a role here reaches exactly those resources.
metadata description = 'Role assignments of the connector, by role name, in one loop.'

@description('Required. Object ID of the app\'s managed identity.')
param appPrincipalId string

@description('Required. Names of the built-in roles (listed in this module) the app\'s identity gets.')
param appRoleNames array

@description('Optional. Object ID of the person, group or pipeline running the deployment; empty: none.')
param deployerPrincipalId string = ''

@description('Optional. Type of the deployer\'s principal.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param deployerPrincipalType string = 'User'

@description('Optional. Names of the built-in roles (listed in this module) the deployer gets.')
param deployerRoleNames array = []

// Built-in role definition IDs, by name: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
var roleIds = {
  'Storage Blob Data Owner': 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  'Storage Blob Data Contributor': 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  'Storage Queue Data Contributor': '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  'Storage Table Data Contributor': '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  'Monitoring Metrics Publisher': '3913510d-42f4-4e42-8a64-420c390055eb'
  'Key Vault Secrets User': '4633458b-17de-408a-b874-0445c86b69e6'
  'Key Vault Secrets Officer': 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
}

var appAssignments = [for roleName in appRoleNames: {
  roleName: roleName
  principalId: appPrincipalId
  principalType: 'ServicePrincipal'
}]
var deployerAssignments = [for roleName in (empty(deployerPrincipalId) ? [] : deployerRoleNames): {
  roleName: roleName
  principalId: deployerPrincipalId
  principalType: deployerPrincipalType
}]
var assignments = concat(appAssignments, deployerAssignments)

resource roleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for assignment in assignments: {
    name: guid(resourceGroup().id, assignment.principalId, roleIds[assignment.roleName])
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds[assignment.roleName])
      principalId: assignment.principalId
      principalType: assignment.principalType
    }
  }
]

@description('The names (GUIDs) of the role assignments, in the order given.')
output ROLE_ASSIGNMENT_NAMES array = [for (assignment, i) in assignments: roleAssignments[i].name]
