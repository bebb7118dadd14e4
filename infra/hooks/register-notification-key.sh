#!/bin/sh
# azd postdeploy hook (azure.yaml): registers the change-notification key as a host function key of the
# Function App, so Graph's calls to the notification endpoint (auth level FUNCTION, ?code=<key>) are accepted.
#
# Why here and not in Bicep: function keys (Microsoft.Web/sites/host/functionKeys) are served by the
# Functions host itself, which on a Flex Consumption app runs only once code is deployed; ARM answers
# "Encountered an error ... from host runtime" before that (Azure/azure-functions-host#11379). Bicep
# stores the same value in Key Vault (infra/modules/keyvault.bicep), where the app setting
# NOTIFICATION_FUNCTION_KEY refers to it. Needs the Azure CLI, signed in (`az login`) to the subscription.
# The key's value comes from the azd environment and is never printed.
set -eu

if [ -z "${NOTIFICATION_FUNCTION_KEY:-}" ]; then
  echo "NOTIFICATION_FUNCTION_KEY is not set in the azd environment: change notifications stay off until it is (README, Deploy, step 5)."
  exit 0
fi
: "${AZURE_RESOURCE_GROUP:?the azd environment has no AZURE_RESOURCE_GROUP (run azd provision first)}"
: "${AZURE_FUNCTION_APP_NAME:?the azd environment has no AZURE_FUNCTION_APP_NAME (run azd provision first)}"

az functionapp keys set \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --name "$AZURE_FUNCTION_APP_NAME" \
  --key-type functionKeys \
  --key-name graph-notifications \
  --key-value "$NOTIFICATION_FUNCTION_KEY" \
  --output none
echo "registered the change-notification key as the host function key graph-notifications of $AZURE_FUNCTION_APP_NAME"
