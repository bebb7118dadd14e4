"""Composition root of the Function App: the app object and one blueprint per module, nothing else."""

import azure.functions as func

from functions import activities, admin, monitoring, notifications, scheduling

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(scheduling.bp)
app.register_functions(monitoring.bp)
app.register_functions(admin.bp)
app.register_functions(notifications.bp)
app.register_functions(activities.bp)
