from django.contrib.admin.apps import AdminConfig


class PlatformAdminConfig(AdminConfig):
    """Replaces ``admin.site`` with the tenant-scoping admin site."""

    default_site = "voice_platform.tenancy.admin_site.PlatformAdminSite"
