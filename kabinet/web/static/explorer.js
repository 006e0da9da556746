/*
 * Boot code of the Kabinet staff GraphQL explorer (/explorer).
 *
 * Loaded after the React, ReactDOM and GraphiQL UMD builds (window.React,
 * window.ReactDOM, window.GraphiQL), all served by Kabinet itself. Kept in a
 * file (not inline) so the page can run under `script-src 'self'`.
 *
 * Requests go to the same-origin /graphql endpoint with cookies
 * (credentials: 'same-origin') and, after "Sign in", an
 * `Authorization: Bearer <accessToken>` header. The token lives in
 * sessionStorage: it survives a reload of this tab and is gone when the tab
 * closes.
 */
(function () {
  'use strict';

  var GRAPHQL_URL = '/graphql';
  var TOKEN_KEY = 'kabinet.explorer.accessToken';
  var LOGIN_MUTATION =
    'mutation($input: LoginInput!) { login(input: $input) { accessToken errors { code message } } }';

  var accessToken = null;
  try {
    accessToken = window.sessionStorage.getItem(TOKEN_KEY);
  } catch (e) {
    accessToken = null; // storage disabled: keep the token in memory only
  }

  function storeToken(token) {
    accessToken = token;
    try {
      if (token) {
        window.sessionStorage.setItem(TOKEN_KEY, token);
      } else {
        window.sessionStorage.removeItem(TOKEN_KEY);
      }
    } catch (e) {
      /* memory only */
    }
  }

  function hasHeader(headers, name) {
    var wanted = name.toLowerCase();
    return Object.keys(headers).some(function (key) {
      return key.toLowerCase() === wanted;
    });
  }

  // fetch() used by GraphiQL: same-origin cookies plus the bearer token, unless
  // the user typed an Authorization header of their own in the Headers tab.
  function authFetch(url, init) {
    var options = Object.assign({}, init || {});
    var headers = Object.assign({}, options.headers || {});
    if (accessToken && !hasHeader(headers, 'authorization')) {
      headers['Authorization'] = 'Bearer ' + accessToken;
    }
    options.headers = headers;
    options.credentials = 'same-origin';
    return window.fetch(url, options);
  }

  // A new fetcher instance makes GraphiQL introspect the schema again, which
  // matters when signing in exposes more of it.
  function makeFetcher() {
    return GraphiQL.createFetcher({
      url: GRAPHQL_URL,
      fetch: authFetch,
      enableIncrementalDelivery: false,
    });
  }

  var root = ReactDOM.createRoot(document.getElementById('graphiql'));

  function render() {
    root.render(
      React.createElement(GraphiQL, {
        fetcher: makeFetcher(),
        defaultEditorToolsVisibility: true,
        shouldPersistHeaders: false,
      })
    );
  }

  // ---- sign-in form -------------------------------------------------------

  var form = document.getElementById('kabinet-auth');
  var fields = document.getElementById('kabinet-auth-fields');
  var identifierInput = document.getElementById('kabinet-identifier');
  var passwordInput = document.getElementById('kabinet-password');
  var signInButton = document.getElementById('kabinet-signin');
  var signOutButton = document.getElementById('kabinet-signout');
  var statusEl = document.getElementById('kabinet-auth-status');
  var errorEl = document.getElementById('kabinet-auth-error');

  function showAuthState() {
    fields.hidden = Boolean(accessToken);
    signOutButton.hidden = !accessToken;
    statusEl.textContent = accessToken ? 'Signed in: requests carry a bearer token.' : '';
  }

  function showError(message) {
    errorEl.textContent = message || '';
  }

  function loginErrorMessage(body) {
    if (!body || typeof body !== 'object') {
      return 'Sign-in failed: unexpected response from the server.';
    }
    var login = body.data && body.data.login;
    if (login && login.errors && login.errors.length) {
      return login.errors
        .map(function (err) {
          return err.message || err.code || 'Sign-in failed.';
        })
        .join(' ');
    }
    if (body.errors && body.errors.length) {
      return body.errors
        .map(function (err) {
          return err.message || 'Sign-in failed.';
        })
        .join(' ');
    }
    return 'Sign-in failed: no access token was returned.';
  }

  form.addEventListener('submit', function (event) {
    event.preventDefault();
    showError('');
    signInButton.disabled = true;
    window
      .fetch(GRAPHQL_URL, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({
          query: LOGIN_MUTATION,
          variables: {
            input: { identifier: identifierInput.value, password: passwordInput.value },
          },
        }),
      })
      .then(function (response) {
        return response.json().catch(function () {
          return { errors: [{ message: 'Sign-in failed: HTTP ' + response.status + '.' }] };
        });
      })
      .then(function (body) {
        var login = body && body.data && body.data.login;
        if (login && login.accessToken && !(login.errors && login.errors.length)) {
          storeToken(login.accessToken);
          passwordInput.value = '';
          showAuthState();
          render();
        } else {
          showError(loginErrorMessage(body));
        }
      })
      .catch(function (err) {
        showError('Sign-in failed: ' + (err && err.message ? err.message : 'network error') + '.');
      })
      .then(function () {
        signInButton.disabled = false;
      });
  });

  signOutButton.addEventListener('click', function () {
    storeToken(null);
    showError('');
    showAuthState();
    render();
  });

  showAuthState();
  render();
})();
