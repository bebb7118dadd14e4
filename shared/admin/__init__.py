"""Administration: one service layer (:mod:`shared.admin.service`) behind the admin API
(:mod:`shared.admin.api`), the management page (:mod:`shared.admin.pages`) and the CLI; definitions with
stable ids and ETags (:mod:`shared.admin.definitions`), export and import (:mod:`shared.admin.transfer`),
authentication tasks at work (:mod:`shared.admin.signin`), access (:mod:`shared.admin.access`) and the ASGI
app that puts them together (:mod:`shared.admin.app`)."""
