/*
 * Boot code of the Kabinet staff GraphQL explorer (/explorer).
 *
 * Kept in a file (not inline) so the pages can run under `script-src 'self'`.
 * It serves both pages that /explorer can answer with:
 *
 * - the GraphiQL page (development: anyone; production: signed-in staff). It is
 *   loaded after the React, ReactDOM and GraphiQL UMD builds (window.React,
 *   window.ReactDOM, window.GraphiQL), all served by Kabinet itself, and boots
 *   GraphiQL into #graphiql;
 * - the sign-in page (production, anyone else): no #graphiql, only the form.
 *
 * The form posts the `login` mutation to the same-origin /graphql with
 * credentials: 'same-origin', so the session cookie of the response
 * (__Host-, Secure, HttpOnly) is stored by the browser. On the sign-in page a
 * successful sign-in reloads /explorer, which the server then answers from
 * that cookie. On the GraphiQL page the access token is also kept in
 * sessionStorage and sent as `Authorization: Bearer` (for a development host
 * served over plain http, where a Secure cookie is not stored); it survives a
 * reload of this tab and is gone when the tab closes.
 *
 * GraphiQL opens on the commented example (in Russian, for support operators) that
 * the server puts into <template id="kabinet-example">, as its defaultQuery: what
 * a first visit and every new tab show instead of GraphiQL's English welcome.
 * (GraphiQL keeps the user's own tabs in localStorage and shows those instead.)
 *
 * The server puts the name of whoever the session cookie belongs to into
 * <form data-identity>; "Sign out" sends the `logout` mutation (which revokes
 * the session and clears the cookie) and reloads.
 */
(function () {
  'use strict';

  var GRAPHQL_URL = '/graphql';
  var TOKEN_KEY = 'kabinet.explorer.accessToken';
  var IDENTITY_KEY = 'kabinet.explorer.identity';
  var LOGIN_MUTATION =
    'mutation KabinetExplorerLogin($input: LoginInput!) { login(input: $input) { ' +
    'accessToken refreshToken expiresAt mustChangePassword errors { code message } } }';
  var LOGOUT_MUTATION = 'mutation KabinetExplorerLogout { logout { ok errors { code message } } }';

  var graphiqlEl = document.getElementById('graphiql');
  var onSignInPage = !graphiqlEl;

  var form = document.getElementById('kabinet-auth');
  var fields = document.getElementById('kabinet-auth-fields');
  var identifierInput = document.getElementById('kabinet-identifier');
  var passwordInput = document.getElementById('kabinet-password');
  var signInButton = document.getElementById('kabinet-signin');
  var signOutButton = document.getElementById('kabinet-signout');
  var statusEl = document.getElementById('kabinet-auth-status');
  var errorEl = document.getElementById('kabinet-auth-error');

  // Who the session cookie belongs to, as the server saw it ('' when nobody).
  var cookieIdentity = form.getAttribute('data-identity') || '';

  // ---- token storage (GraphiQL page only) ---------------------------------

  function load(key) {
    try {
      return window.sessionStorage.getItem(key);
    } catch (e) {
      return null; // storage disabled: keep the token in memory only
    }
  }

  function save(key, value) {
    try {
      if (value) {
        window.sessionStorage.setItem(key, value);
      } else {
        window.sessionStorage.removeItem(key);
      }
    } catch (e) {
      /* memory only */
    }
  }

  var accessToken = onSignInPage ? null : load(TOKEN_KEY);
  var tokenIdentity = onSignInPage ? null : load(IDENTITY_KEY);

  function storeToken(token, identity) {
    accessToken = token;
    tokenIdentity = identity;
    save(TOKEN_KEY, token);
    save(IDENTITY_KEY, identity);
  }

  function currentIdentity() {
    if (accessToken) {
      return tokenIdentity || 'a bearer token';
    }
    return cookieIdentity;
  }

  function hasHeader(headers, name) {
    var wanted = name.toLowerCase();
    return Object.keys(headers).some(function (key) {
      return key.toLowerCase() === wanted;
    });
  }

  // ---- requests -----------------------------------------------------------

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

  // One GraphQL request outside GraphiQL; resolves to the JSON body.
  function postGraphQL(query, variables, bearer) {
    var headers = { 'Content-Type': 'application/json', Accept: 'application/json' };
    if (bearer) {
      headers['Authorization'] = 'Bearer ' + bearer;
    }
    return window
      .fetch(GRAPHQL_URL, {
        method: 'POST',
        credentials: 'same-origin',
        headers: headers,
        body: JSON.stringify({ query: query, variables: variables || {} }),
      })
      .then(function (response) {
        return response.json().catch(function () {
          return { errors: [{ message: 'HTTP ' + response.status + '.' }] };
        });
      });
  }

  // ---- GraphiQL -----------------------------------------------------------

  var root = onSignInPage ? null : ReactDOM.createRoot(graphiqlEl);

  // The example to open on (a <template>: inert markup, so no inline script is needed).
  var exampleEl = document.getElementById('kabinet-example');
  var exampleQuery = exampleEl && exampleEl.content ? exampleEl.content.textContent : undefined;

  // A new fetcher instance makes GraphiQL introspect the schema again, which
  // matters when signing in exposes more of it.
  function render() {
    if (!root) {
      return;
    }
    root.render(
      React.createElement(GraphiQL, {
        fetcher: GraphiQL.createFetcher({
          url: GRAPHQL_URL,
          fetch: authFetch,
          enableIncrementalDelivery: false,
        }),
        defaultQuery: exampleQuery,
        defaultEditorToolsVisibility: true,
        shouldPersistHeaders: false,
      })
    );
  }

  // ---- sign-in form -------------------------------------------------------

  function showAuthState(note) {
    var who = currentIdentity();
    // The sign-in page keeps its fields when someone (not staff) is signed in:
    // signing in with a staff account is what it is for.
    fields.hidden = Boolean(who) && !onSignInPage;
    signOutButton.hidden = !who;
    statusEl.textContent = who && !onSignInPage ? 'Signed in as ' + who + (note || '') : '';
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
    var identifier = identifierInput.value.trim();
    postGraphQL(LOGIN_MUTATION, {
      input: { identifier: identifier, password: passwordInput.value },
    })
      .then(function (body) {
        var login = body && body.data && body.data.login;
        if (!(login && login.accessToken && !(login.errors && login.errors.length))) {
          showError(loginErrorMessage(body));
          return;
        }
        passwordInput.value = '';
        if (onSignInPage) {
          // The session cookie is set: the server decides what /explorer shows now.
          statusEl.textContent = 'Signed in as ' + identifier + '. Opening the explorer…';
          window.location.reload();
          return;
        }
        storeToken(login.accessToken, identifier);
        showAuthState(
          login.mustChangePassword
            ? ' (change the temporary password first: changePassword).'
            : ''
        );
        render();
      })
      .catch(function (err) {
        showError('Sign-in failed: ' + (err && err.message ? err.message : 'network error') + '.');
      })
      .then(function () {
        signInButton.disabled = false;
      });
  });

  signOutButton.addEventListener('click', function () {
    showError('');
    signOutButton.disabled = true;
    var token = accessToken;
    // End the bearer token's session, then the cookie's (usually the same one:
    // then the second request finds no session and does nothing).
    var done = token ? postGraphQL(LOGOUT_MUTATION, null, token) : Promise.resolve(null);
    if (cookieIdentity) {
      done = done
        .catch(function () {
          return null;
        })
        .then(function () {
          return postGraphQL(LOGOUT_MUTATION, null, null);
        });
    }
    done
      .catch(function () {
        return null;
      })
      .then(function () {
        storeToken(null, null);
        window.location.reload();
      });
  });

  showAuthState();
  render();
})();
