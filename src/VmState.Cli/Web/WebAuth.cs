using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;

namespace VmState.Cli.Web;

/// <summary>
/// Who may use the server. With a token: <c>Authorization: Bearer TOKEN</c>, or the cookie a first
/// <c>?token=TOKEN</c> sets (HttpOnly, SameSite=Strict), compared as SHA-256 digests in fixed time; anything else is 401.
/// Without a token (loopback only): the Host header must name a loopback host, so a web page elsewhere cannot reach
/// the server through DNS rebinding. Either way a POST must come from the server's own pages (its Origin, if the
/// browser sends one, is the server's), so another site cannot press the buttons.
/// </summary>
internal sealed class WebAuth(string? token)
{
    /// <summary>The cookie that carries the token after the first load.</summary>
    public const string CookieName = "vmstate_token";

    private readonly byte[]? _digest = token is null ? null : SHA256.HashData(Encoding.UTF8.GetBytes(token));

    /// <summary>
    /// Checks the request; returns null to go on, or the status and message to answer with. A correct
    /// <c>?token=</c> on a GET sets the cookie and redirects to the same URL without it.
    /// </summary>
    public (int Status, string Message, string? Redirect)? Check(HttpContext context)
    {
        HttpRequest request = context.Request;
        if (HttpMethods.IsPost(request.Method) && request.Headers.Origin.Count > 0 && request.Headers.Origin[0] is string origin
            && !string.Equals(origin, $"{request.Scheme}://{request.Host.Value}", StringComparison.OrdinalIgnoreCase))
        {
            return (403, "cross-site request refused", null);
        }

        if (_digest is null)
        {
            string host = request.Host.Host;
            return host is "localhost" or "127.0.0.1" or "[::1]" or "::1" || host.StartsWith("127.", StringComparison.Ordinal)
                ? null
                : (421, "this server answers only to localhost (start it with --token to use another name or address)", null);
        }

        string? bearer = request.Headers.Authorization.Count > 0 && request.Headers.Authorization[0] is string a && a.StartsWith("Bearer ", StringComparison.Ordinal) ? a[7..] : null;
        if (bearer is not null && Matches(bearer))
        {
            return null;
        }

        if (request.Cookies.TryGetValue(CookieName, out string? cookie) && Matches(cookie))
        {
            return null;
        }

        if (request.Query.TryGetValue("token", out var q) && q.Count == 1 && q[0] is string given && Matches(given))
        {
            context.Response.Cookies.Append(CookieName, given, new CookieOptions { HttpOnly = true, SameSite = SameSiteMode.Strict, Path = "/", IsEssential = true });
            if (HttpMethods.IsGet(request.Method))
            {
                var rest = request.Query.Where(kv => kv.Key != "token").Select(kv => $"{Uri.EscapeDataString(kv.Key)}={Uri.EscapeDataString(kv.Value.ToString())}");
                string query = string.Join('&', rest);
                return (303, "token accepted", request.Path.ToUriComponent() + (query.Length > 0 ? "?" + query : string.Empty));
            }

            return null;
        }

        return (401, "this server needs its token: open the URL it printed (with ?token=), or send Authorization: Bearer TOKEN", null);
    }

    private bool Matches(string given) => CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(given)), _digest);
}
