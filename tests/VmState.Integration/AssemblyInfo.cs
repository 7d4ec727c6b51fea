// The integration tests drive QEMU on Linux; they never run elsewhere.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
